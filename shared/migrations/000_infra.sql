-- The transactional outbox every service keeps in its own schema. (Each consumer's
-- idempotency record is a business key of its own: a journal idempotency key, a key's
-- source session, a Stripe event id, consumer offsets; see each service's migrations.)

CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
