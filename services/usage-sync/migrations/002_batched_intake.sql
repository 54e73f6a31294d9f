-- Intake is batched with Kafka offsets stored in consumer_offsets (shared migration), so
-- redelivery after a crash cannot double count. Upstream re-publishes (a relay that
-- crashed after Kafka acknowledged) are dropped by a per-key watermark of cumulative units.
CREATE TABLE key_watermarks (
    key_id      text PRIMARY KEY,
    units_total bigint NOT NULL
);

-- Members already counted by "count unique" meters, per window.
CREATE TABLE usage_window_members (
    account_id   text        NOT NULL,
    meter        text        NOT NULL,
    window_start timestamptz NOT NULL,
    member       text        NOT NULL,
    PRIMARY KEY (account_id, meter, window_start, member)
);
