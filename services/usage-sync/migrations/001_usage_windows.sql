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
