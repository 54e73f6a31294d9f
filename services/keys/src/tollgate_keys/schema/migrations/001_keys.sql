-- API keys, their limits and current rate windows, and the prepaid credits keys
-- consumes against. Only an HMAC-SHA256 of a key is stored, never the plaintext.
-- The validation rules that read and write these rows are in ../sql/validation.sql.
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
    -- Limits from plan features (api:rate:minute:N and so on); NULL is no limit.
    requests_per_minute int CHECK (requests_per_minute > 0),
    requests_per_hour   int CHECK (requests_per_hour > 0),
    requests_per_day    int CHECK (requests_per_day > 0),
    units_per_minute    int CHECK (units_per_minute > 0),
    -- What payment events refer to: the subscription (metered) or the payment (packs).
    subscription_id     text,
    payment_intent_id   text,
    -- A billing hold: set when an invoice fails (the key stops at this time unless a
    -- payment arrives first), or at once when a prepaid key's account has no pack left.
    -- Payments lift it; they never lift an operator's suspension (status 'suspended').
    suspend_at          timestamptz,
    -- Rotation: the successor this key is an alias of until its grace (expires_at) ends.
    rotated_to          uuid REFERENCES keys (id),
    -- Where a rotated key's successor is delivered (encrypted, through the notifier).
    customer_email      text,
    product_name        text,
    -- The current fixed, clock-aligned windows, kept in the key's own row so that the
    -- one row lock and the one UPDATE of a validation cover quota and windows together.
    minute_start    timestamptz,
    minute_requests bigint NOT NULL DEFAULT 0,
    minute_units    bigint NOT NULL DEFAULT 0,
    hour_start      timestamptz,
    hour_requests   bigint NOT NULL DEFAULT 0,
    day_start       timestamptz,
    day_requests    bigint NOT NULL DEFAULT 0,
    -- the quota can never be overdrawn, whatever the code above it does
    CONSTRAINT quota_within_limit CHECK (quota_limit IS NULL OR quota_used <= quota_limit)
);
CREATE INDEX keys_account ON keys (account_id);
CREATE INDEX keys_subscription ON keys (subscription_id) WHERE subscription_id IS NOT NULL;
CREATE INDEX keys_payment_intent ON keys (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

-- Every pack a key's quota came from: the one that issued it, and those bought again by a
-- customer who already held a key for the plan (a top-up). One row per paid Checkout
-- Session, so a redelivered payment adds nothing. A pack ends when the money it brought
-- has gone back to the customer, by refunds or lost disputes; a prepaid key works while
-- its account has a pack that has not ended.
CREATE TABLE key_packs (
    source_ref        text PRIMARY KEY,
    key_id            uuid        NOT NULL REFERENCES keys (id),
    account_id        text        NOT NULL,
    payment_intent_id text,
    credits           bigint      NOT NULL CHECK (credits > 0),
    paid_minor        bigint      NOT NULL DEFAULT 0,
    refunded_minor    bigint      NOT NULL DEFAULT 0,  -- the charge's refunded total, as Stripe last said
    disputed_minor    bigint      NOT NULL DEFAULT 0,  -- lost disputes, each counted once
    lost_disputes     text[]      NOT NULL DEFAULT '{}',
    ended_at          timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_packs_account ON key_packs (account_id) WHERE ended_at IS NULL;
CREATE INDEX key_packs_payment ON key_packs (payment_intent_id);

-- A subscription's invoices as far as access goes: a subscription's keys are held while
-- any of its invoices is unpaid, whatever order their facts arrived in. Paid is final.
CREATE TABLE subscription_invoices (
    invoice_id      text PRIMARY KEY,
    subscription_id text        NOT NULL,
    paid            boolean     NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_invoices_unpaid ON subscription_invoices (subscription_id) WHERE NOT paid;

-- Prepaid credits, exact: the keys service learns each account's available credits from
-- the ledger (ledger.balances) and consumes against them atomically with the quota and
-- the rate limits. Its view of what is available:
--   ledger_available - (consumed_total - ledger_usage_total)
-- The ledger's balance at `ledger_version` already reflects `ledger_usage_total` units
-- of usage; what this service consumed beyond that is still on its way to the ledger.
-- When all events have drained the two numbers agree to the unit.
CREATE TABLE account_credits (
    account_id         text PRIMARY KEY,
    ledger_available   bigint,           -- NULL until the ledger's first balance arrives
    ledger_usage_total bigint NOT NULL DEFAULT 0,
    ledger_version     bigint NOT NULL DEFAULT 0,
    consumed_total     bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
