-- The portal's own state. It keeps no money and no keys: balances, keys and purchases
-- stay with the services that own them, read through their APIs.

-- Who may sign in: a Tollgate account (the Stripe customer) and the address its links go to.
CREATE TABLE customers (
    account_id text PRIMARY KEY,
    email      text        NOT NULL UNIQUE,  -- lower-cased
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sign-in links: only a hash of the token is kept; each works once, until it expires.
CREATE TABLE sign_in_links (
    token_hash bytea PRIMARY KEY,
    account_id text        NOT NULL REFERENCES customers (account_id),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_links_account ON sign_in_links (account_id, created_at);

-- Signed-in browsers: a hash of the session cookie's id, and the CSRF token of its forms.
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,
    account_id text        NOT NULL REFERENCES customers (account_id),
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX sessions_account ON sessions (account_id) WHERE revoked_at IS NULL;

-- Sign-up and sign-in requests, counted per address and per email in fixed windows.
CREATE TABLE link_requests (
    scope        text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    requests     int         NOT NULL,
    PRIMARY KEY (scope, subject, window_start)
);

-- Auto-recharge: when available credits fall below `threshold`, top up `amount_minor`,
-- at most once per crossing (`armed` drops when it fires, rises when available is back
-- over the threshold) and `daily_cap` times a day; a decline pauses it.
CREATE TABLE auto_recharge (
    account_id   text PRIMARY KEY REFERENCES customers (account_id),
    enabled      boolean     NOT NULL,
    threshold    bigint      NOT NULL CHECK (threshold >= 0),
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    daily_cap    int         NOT NULL CHECK (daily_cap > 0),
    armed        boolean     NOT NULL DEFAULT true,
    crossings    bigint      NOT NULL DEFAULT 0,
    paused       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE recharges (
    id         text PRIMARY KEY,  -- the crossing: also the top-up's idempotency key
    account_id text        NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    top_up_id  text,
    outcome    text
);
CREATE INDEX recharges_account ON recharges (account_id, fired_at);
-- The newest balance version seen per account: an older one arriving late changes nothing.
CREATE TABLE balance_versions (
    account_id text PRIMARY KEY,
    version    bigint NOT NULL
);

-- Usage per key and hour, from usage.recorded (the same records the ledger burns and
-- usage-sync reports), for the charts and their CSV; and when each key was last used.
CREATE TABLE key_usage_hourly (
    account_id text        NOT NULL,
    key_id     uuid        NOT NULL,
    hour       timestamptz NOT NULL,
    calls      bigint      NOT NULL,
    units      bigint      NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, hour, key_id)
);
CREATE TABLE key_watermarks (  -- tollgate_shared.usage_dedup: each record counted once
    key_id      text PRIMARY KEY,
    units_total bigint NOT NULL
);
