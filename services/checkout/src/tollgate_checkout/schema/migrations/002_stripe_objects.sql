-- Where each Stripe object that moves money or access stands, so that a late or repeated
-- webhook cannot move it back (see tollgate_checkout.machines).
CREATE TABLE stripe_objects (
    id             text PRIMARY KEY,
    kind           text        NOT NULL,
    state          text        NOT NULL,
    rank           int         NOT NULL,
    progress       bigint      NOT NULL,
    stripe_created bigint      NOT NULL,
    account_id     text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Facts another fact must precede (a payment before its refund; a subscription's start
-- before its invoices and its end), once that one is published: the dependency's name and
-- whose it is.
CREATE TABLE provided (
    dependency  text PRIMARY KEY,
    account_id  text        NOT NULL,
    provided_at timestamptz NOT NULL DEFAULT now()
);

-- Facts waiting for what they depend on, published in arrival order when it comes.
CREATE TABLE parked_facts (
    id          bigserial PRIMARY KEY,
    dependency  text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    payload     jsonb       NOT NULL,
    stripe_event text       NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_facts_dependency ON parked_facts (dependency, id);
