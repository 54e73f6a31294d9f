-- The book of record: account flags enforced by the database, a hash chain over the
-- journal, accounting periods, two-phase transfers, credit grants and balance alerts.

-- Accounts: who owns them, how available balance is computed, when to warn.
ALTER TABLE accounts
    ADD COLUMN owner_kind text NOT NULL DEFAULT 'customer'
        CHECK (owner_kind IN ('customer', 'subscription', 'system')),
    -- 'conservative': available = posted less pending outflows (TigerBeetle, Blnk);
    -- 'optimistic':   available = posted plus all pending activity (Moesif).
    ADD COLUMN spend_rule text NOT NULL DEFAULT 'conservative' CHECK (spend_rule IN ('conservative', 'optimistic')),
    ADD COLUMN low_balance_threshold bigint CHECK (low_balance_threshold >= 0),
    ADD CONSTRAINT accounts_known_flags CHECK (flags <@ ARRAY['no_overdraft', 'no_positive', 'closed']);

-- Balances carry the account's direction and flags so that the database itself refuses
-- any change that would break them, whatever code path made it.
ALTER TABLE balances
    ADD COLUMN credit_normal boolean NOT NULL DEFAULT true,
    ADD COLUMN no_overdraft  boolean NOT NULL DEFAULT false,
    ADD COLUMN no_positive   boolean NOT NULL DEFAULT false,
    ADD COLUMN closed        boolean NOT NULL DEFAULT false,
    -- Last alert published, so each crossing is announced once: ok | low | exhausted.
    ADD COLUMN alert_state   text    NOT NULL DEFAULT 'ok',
    ADD CONSTRAINT balances_no_overdraft CHECK (
        NOT no_overdraft OR CASE WHEN credit_normal
            THEN debits_posted + debits_pending <= credits_posted
            ELSE credits_posted + credits_pending <= debits_posted END),
    ADD CONSTRAINT balances_no_positive CHECK (
        NOT no_positive OR CASE WHEN credit_normal
            THEN credits_posted + credits_pending <= debits_posted
            ELSE debits_posted + debits_pending <= credits_posted END);

CREATE FUNCTION refuse_closed_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.closed AND (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
        IS DISTINCT FROM (OLD.debits_posted, OLD.credits_posted, OLD.debits_pending, OLD.credits_pending) THEN
        RAISE EXCEPTION 'account % is closed', OLD.account_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER balances_closed_accounts BEFORE UPDATE ON balances
    FOR EACH ROW EXECUTE FUNCTION refuse_closed_account_change();

-- The hash chain: each journal transaction's hash covers its content and the previous
-- hash, so editing any row (even with triggers disabled) breaks every later link.
-- `created_at` is set by the writer, because it is part of what the hash covers.
ALTER TABLE journal_transactions
    ADD COLUMN seq       bigint NOT NULL UNIQUE,
    ADD COLUMN period    text   NOT NULL,
    ADD COLUMN prev_hash bytea  NOT NULL,
    ADD COLUMN hash      bytea  NOT NULL UNIQUE,
    ALTER COLUMN created_at DROP DEFAULT;
CREATE INDEX journal_transactions_period ON journal_transactions (period, id);
CREATE INDEX journal_transactions_business_time ON journal_transactions (business_time);
CREATE INDEX journal_transactions_source_ref ON journal_transactions (source_ref);

-- The chain's head. Writers lock it last, after their balance rows, so the whole
-- journal has one order; one lock per database transaction (burns and transfers are
-- batched), not one per entry.
CREATE TABLE chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);
INSERT INTO chain_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

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
CREATE TRIGGER periods_append_only BEFORE UPDATE OR DELETE ON periods
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE TRIGGER period_balances_append_only BEFORE UPDATE OR DELETE ON period_balances
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();

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
-- (tollgate_shared.usage_dedup, which usage-sync uses on its own table of this name).
CREATE TABLE key_watermarks (
    key_id      text PRIMARY KEY,
    units_total bigint NOT NULL
);
