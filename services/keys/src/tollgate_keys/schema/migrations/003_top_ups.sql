-- Top-ups raise the quota of the account's prepaid keys by their credits when requested
-- (the credits are spendable while pending), and take it back if the charge fails: one
-- row per top-up, so a redelivered fact moves nothing twice.
CREATE TABLE top_up_quota (
    top_up_id  text PRIMARY KEY,
    account_id text        NOT NULL,
    credits    bigint      NOT NULL CHECK (credits > 0),
    taken_back boolean     NOT NULL DEFAULT false,
    at         timestamptz NOT NULL DEFAULT now()
);
