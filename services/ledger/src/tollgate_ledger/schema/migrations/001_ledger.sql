-- The double-entry book of record. Amounts are integers in the asset's smallest unit:
-- a positive posting is a debit, a negative one a credit. The rules the database itself
-- enforces on these tables (balanced transactions, an append-only journal, closed
-- accounts) are in ../sql/journal_rules.sql.

-- Accounts: who owns them, how available balance is computed, when to warn.
CREATE TABLE accounts (
    id         text PRIMARY KEY,
    owner      text        NOT NULL,
    owner_kind text        NOT NULL DEFAULT 'customer' CHECK (owner_kind IN ('customer', 'subscription', 'system')),
    type       text        NOT NULL CHECK (type IN ('asset', 'liability', 'revenue', 'expense', 'equity')),
    asset      text        NOT NULL,
    flags      text[]      NOT NULL DEFAULT '{}' CHECK (flags <@ ARRAY['no_overdraft', 'no_positive', 'closed']),
    -- 'conservative': available = posted less pending outflows (TigerBeetle, Blnk);
    -- 'optimistic':   available = posted plus all pending activity (Moesif).
    spend_rule text        NOT NULL DEFAULT 'conservative' CHECK (spend_rule IN ('conservative', 'optimistic')),
    low_balance_threshold bigint CHECK (low_balance_threshold >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_owner ON accounts (owner);

-- The journal, hash-chained: each transaction's hash covers its content and the
-- previous hash, so editing any row (even with triggers disabled) breaks every later
-- link. `created_at` is set by the writer, because it is part of what the hash covers.
CREATE TABLE journal_transactions (
    id              bigserial PRIMARY KEY,
    seq             bigint      NOT NULL UNIQUE,
    idempotency_key text        NOT NULL UNIQUE,
    kind            text        NOT NULL,
    business_time   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    period          text        NOT NULL,
    source_ref      text,
    reverses        bigint REFERENCES journal_transactions (id),
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL UNIQUE
);
CREATE INDEX journal_transactions_period ON journal_transactions (period, id);
CREATE INDEX journal_transactions_business_time ON journal_transactions (business_time);
CREATE INDEX journal_transactions_source_ref ON journal_transactions (source_ref);

CREATE TABLE postings (
    id         bigserial PRIMARY KEY,
    tx_id      bigint NOT NULL REFERENCES journal_transactions (id),
    account_id text   NOT NULL REFERENCES accounts (id),
    asset      text   NOT NULL,
    amount     bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_tx ON postings (tx_id);
CREATE INDEX postings_account ON postings (account_id, tx_id);

-- The chain's head. Writers lock it after their balance rows, so the whole journal has
-- one order; one lock per database transaction (burns and transfers are batched), not
-- one per entry.
CREATE TABLE chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);
INSERT INTO chain_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Running totals per account, kept in the same transaction as the postings. They carry
-- the account's direction and flags so that the database itself refuses any change
-- that would break them, whatever code path made it.
CREATE TABLE balances (
    account_id      text PRIMARY KEY REFERENCES accounts (id),
    debits_posted   bigint  NOT NULL DEFAULT 0,
    credits_posted  bigint  NOT NULL DEFAULT 0,
    debits_pending  bigint  NOT NULL DEFAULT 0,
    credits_pending bigint  NOT NULL DEFAULT 0,
    version         bigint  NOT NULL DEFAULT 0,
    credit_normal   boolean NOT NULL DEFAULT true,
    no_overdraft    boolean NOT NULL DEFAULT false,
    no_positive     boolean NOT NULL DEFAULT false,
    closed          boolean NOT NULL DEFAULT false,
    -- Last alert published, so each crossing is announced once: ok | low | exhausted.
    alert_state     text    NOT NULL DEFAULT 'ok',
    -- Cumulative usage units booked against a customer's credits account (burned or
    -- overdrawn), published with its balance: the keys service subtracts what it
    -- consumed beyond this from the available balance, so it can gate spending before
    -- the ledger has caught up.
    usage_total     bigint  NOT NULL DEFAULT 0 CHECK (usage_total >= 0),
    CONSTRAINT balances_no_overdraft CHECK (
        NOT no_overdraft OR CASE WHEN credit_normal
            THEN debits_posted + debits_pending <= credits_posted
            ELSE credits_posted + credits_pending <= debits_posted END),
    CONSTRAINT balances_no_positive CHECK (
        NOT no_positive OR CASE WHEN credit_normal
            THEN credits_posted + credits_pending <= debits_posted
            ELSE debits_posted + debits_pending <= credits_posted END)
);

-- Accounting periods (calendar months, UTC). Closing one stamps every account's
-- opening + activity = closing with the chain position; a closed period takes no
-- new entries: a late one is booked in the first open period after it.
CREATE TABLE periods (
    period     text PRIMARY KEY,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    closed_at  timestamptz NOT NULL,
    chain_seq  bigint NOT NULL,
    chain_hash bytea  NOT NULL
);
CREATE TABLE period_balances (
    period     text   NOT NULL REFERENCES periods (period),
    account_id text   NOT NULL REFERENCES accounts (id),
    asset      text   NOT NULL,
    opening    bigint NOT NULL,
    debits     bigint NOT NULL,
    credits    bigint NOT NULL,
    closing    bigint NOT NULL,
    PRIMARY KEY (period, account_id),
    CHECK (opening + debits - credits = closing)
);

-- Two-phase transfers: a hold counts in the pending columns of both accounts' balances
-- until it is posted (in full or in part), voided, or expires.
CREATE TABLE pending_transfers (
    id             text PRIMARY KEY,  -- the client's id: sending it again is a no-op
    debit_account  text   NOT NULL REFERENCES accounts (id),
    credit_account text   NOT NULL REFERENCES accounts (id),
    asset          text   NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    kind           text   NOT NULL,
    source_ref     text,
    state          text   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'posted', 'voided', 'expired')),
    posted_amount  bigint NOT NULL DEFAULT 0 CHECK (posted_amount >= 0 AND posted_amount <= amount),
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolved_tx    bigint REFERENCES journal_transactions (id)
);
CREATE INDEX pending_transfers_expiry ON pending_transfers (expires_at) WHERE state = 'pending';
CREATE INDEX pending_transfers_source_ref ON pending_transfers (source_ref);

-- Credit grants: a sub-ledger of the customer's credits account saying which grant each
-- unit came from. Burns take from the lowest priority number first (promotional before
-- paid), then the soonest expiry. Invariant: an account's open grants sum to its balance.
CREATE TABLE credit_grants (
    id          text PRIMARY KEY,
    account_id  text   NOT NULL REFERENCES accounts (id),
    kind        text   NOT NULL CHECK (kind IN ('paid', 'promotional', 'adjustment')),
    priority    int    NOT NULL,
    granted     bigint NOT NULL CHECK (granted > 0),
    remaining   bigint NOT NULL CHECK (remaining >= 0 AND remaining <= granted),
    expires_at  timestamptz,
    source_ref  text,
    -- What was paid for a paid grant, and how much of it has been refunded so far.
    paid_minor     bigint,
    currency       text,
    refunded_minor bigint NOT NULL DEFAULT 0,
    granted_tx  bigint NOT NULL REFERENCES journal_transactions (id),
    expired_tx  bigint REFERENCES journal_transactions (id)
);
CREATE INDEX credit_grants_burn_order ON credit_grants (account_id, priority, expires_at, id) WHERE remaining > 0;
CREATE INDEX credit_grants_expiry ON credit_grants (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;
CREATE INDEX credit_grants_source_ref ON credit_grants (source_ref);

-- Upstream re-publishes of usage are dropped by a per-key watermark of cumulative units
-- (tollgate_shared.usage_dedup).
CREATE TABLE key_watermarks (
    key_id      text PRIMARY KEY,
    units_total bigint NOT NULL
);
