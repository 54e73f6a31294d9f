-- API keys. Only an HMAC-SHA256 of the key is stored, never the plaintext.
CREATE TABLE keys (
    id          uuid PRIMARY KEY,
    account_id  text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,
    key_display text        NOT NULL,
    plan        text        NOT NULL,
    billing     text        NOT NULL CHECK (billing IN ('prepaid', 'metered')),
    quota_limit bigint CHECK (quota_limit IS NULL OR quota_limit >= 0),
    quota_used  bigint      NOT NULL DEFAULT 0 CHECK (quota_used >= 0),
    features    text[]      NOT NULL DEFAULT '{}',
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    expires_at  timestamptz,
    -- what caused the issue (a Checkout Session): a redelivered payment issues no second key
    source_ref  text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    -- the quota can never be overdrawn, whatever the code above it does
    CONSTRAINT quota_within_limit CHECK (quota_limit IS NULL OR quota_used <= quota_limit)
);
CREATE INDEX keys_account ON keys (account_id);
