-- What every service keeps in its own schema: the transactional outbox, and the Kafka
-- positions its consumers have applied.

-- Events written in the same transaction as the change they announce, relayed to Kafka
-- after. Published rows stay for a retention window instead of being deleted at once,
-- so the unique event_id also stops a fact from being published twice when a second
-- upstream message (e.g. another Stripe event for the same payment) describes it again.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    event_id     uuid        NOT NULL UNIQUE,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Kafka positions a consumer has applied, committed in the same transaction as the
-- effect: the database, not Kafka, is the record of what was done.
CREATE TABLE consumer_offsets (
    consumer     text   NOT NULL,
    topic        text   NOT NULL,
    partition    int    NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
