-- Double-entry journal. Amounts are integers in the asset's smallest unit:
-- a positive posting is a debit, a negative one a credit.

CREATE TABLE accounts (
    id         text PRIMARY KEY,
    owner      text        NOT NULL,
    type       text        NOT NULL CHECK (type IN ('asset', 'liability', 'revenue', 'expense', 'equity')),
    asset      text        NOT NULL,
    flags      text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_owner ON accounts (owner);

CREATE TABLE journal_transactions (
    id              bigserial PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    kind            text        NOT NULL,
    business_time   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    source_ref      text,
    reverses        bigint REFERENCES journal_transactions (id)
);

CREATE TABLE postings (
    id         bigserial PRIMARY KEY,
    tx_id      bigint NOT NULL REFERENCES journal_transactions (id),
    account_id text   NOT NULL REFERENCES accounts (id),
    asset      text   NOT NULL,
    amount     bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_tx ON postings (tx_id);
CREATE INDEX postings_account ON postings (account_id, tx_id);

-- Running totals per account, kept in the same transaction as the postings.
CREATE TABLE balances (
    account_id      text PRIMARY KEY REFERENCES accounts (id),
    debits_posted   bigint NOT NULL DEFAULT 0,
    credits_posted  bigint NOT NULL DEFAULT 0,
    debits_pending  bigint NOT NULL DEFAULT 0,
    credits_pending bigint NOT NULL DEFAULT 0,
    version         bigint NOT NULL DEFAULT 0
);

-- Every transaction sums to zero per asset, checked by the database at commit, so
-- no code path (present or future) can book an unbalanced entry.
CREATE FUNCTION assert_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM postings WHERE tx_id = NEW.tx_id GROUP BY asset HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION 'journal transaction % does not balance', NEW.tx_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION assert_transaction_balanced();

-- The journal is append-only: corrections are reversing entries, never edits.
CREATE FUNCTION forbid_journal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER journal_transactions_append_only BEFORE UPDATE OR DELETE ON journal_transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE TRIGGER journal_transactions_no_truncate BEFORE TRUNCATE ON journal_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_journal_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_journal_change();
