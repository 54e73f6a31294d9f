-- One row per email we owe. 'sending' is written before SMTP, 'sent' after it: a
-- redelivered event finds 'sent' and sends nothing.
CREATE TABLE emails (
    event_id   uuid PRIMARY KEY,
    template   text        NOT NULL,
    recipient  text        NOT NULL,
    message_id text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('sending', 'sent')),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
