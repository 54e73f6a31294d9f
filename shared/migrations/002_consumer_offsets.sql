-- Kafka positions a transactional consumer has applied, committed in the same
-- transaction as the effect: the database, not Kafka, is the record of what was done.
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer     text   NOT NULL,
    topic        text   NOT NULL,
    partition    int    NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
