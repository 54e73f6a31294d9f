-- Credits bought outside Checkout: by the API (a customer's key), from the portal, by an
-- auto-recharge rule, or paid outside Tollgate altogether (Stripe's dashboard). Its state
-- moves once, from requested to succeeded or failed, on whichever of Stripe's answer and
-- its webhook comes first; the move and its fact commit together.
CREATE TABLE top_ups (
    id                text PRIMARY KEY,
    account_id        text        NOT NULL,
    source            text        NOT NULL,
    amount_minor      bigint      NOT NULL CHECK (amount_minor > 0),
    currency          text        NOT NULL,
    credits           bigint      NOT NULL CHECK (credits > 0),
    state             text        NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'succeeded', 'failed')),
    payment_intent_id text UNIQUE,
    failure           text,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz
);
CREATE INDEX top_ups_account ON top_ups (account_id, requested_at);
