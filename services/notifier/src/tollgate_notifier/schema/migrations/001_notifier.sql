-- One row per email sent, written in the same transaction as the consumer's offset: a
-- redelivered event finds its row and sends nothing.
CREATE TABLE emails (
    event_id   uuid PRIMARY KEY,
    template   text        NOT NULL,
    recipient  text        NOT NULL,
    message_id text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);

-- Where to write to a customer about their account: learnt from the key events, which
-- carry the address the customer paid with. Balance alerts and payment failures name
-- only the account.
CREATE TABLE contacts (
    account_id text PRIMARY KEY,
    email      text NOT NULL,
    name       text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
