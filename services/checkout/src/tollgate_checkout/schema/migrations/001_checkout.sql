-- Every Stripe webhook event we accepted, once. The primary key is the dedup:
-- Stripe delivers at least once, and a replayed delivery must change nothing.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text        NOT NULL,
    outcome     text        NOT NULL,
    payload     jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
