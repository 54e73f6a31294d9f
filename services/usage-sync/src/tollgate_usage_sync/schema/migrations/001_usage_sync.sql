-- Usage per (customer, meter, window), and the state of its report to Stripe:
--   open      -> still counting
--   pending   -> closed (grace passed), not yet sent
--   sent      -> request started; outcome unknown until confirmed (re-sent after a crash,
--                harmless because the identifier is deterministic)
--   confirmed -> Stripe accepted it
--   failed    -> Stripe refused it (4xx other than 429); `error` says why
CREATE TABLE usage_windows (
    account_id      text        NOT NULL,
    meter           text        NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    value           bigint      NOT NULL DEFAULT 0,
    state           text        NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'pending', 'sent', 'confirmed', 'failed')),
    identifier      text        NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, meter, window_start)
);
CREATE INDEX usage_windows_due ON usage_windows (state, next_attempt_at) WHERE state <> 'confirmed';

-- Upstream re-publishes (a relay that crashed after Kafka acknowledged) are dropped by a
-- per-key watermark of cumulative units (tollgate_shared.usage_dedup).
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
