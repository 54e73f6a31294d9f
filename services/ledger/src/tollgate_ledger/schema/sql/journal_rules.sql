-- What the database refuses, whatever code path asks: an unbalanced transaction, any
-- edit of the journal or of a closed period, and any movement on a closed account.
-- (Flags on balances, no_overdraft and no_positive, are CHECK constraints of the table.)

-- Every transaction sums to zero per asset. Checked once per INSERT statement, not once
-- per posting row: a usage batch inserts hundreds of postings in one statement. Each
-- statement's rows must sum to zero per transaction and asset, so a transaction's
-- postings, however many statements bring them, always balance; the check reads only
-- the statement's own rows (the transition table), never the growing postings table.
CREATE OR REPLACE FUNCTION assert_statement_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad bigint;
BEGIN
    SELECT n.tx_id INTO bad
    FROM new_postings n
    GROUP BY n.tx_id, n.asset
    HAVING sum(n.amount) <> 0
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'journal transaction % does not balance', bad USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER postings_balanced AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION assert_statement_balanced();

-- The journal is append-only: corrections are reversing entries, never edits. The same
-- holds for what a period close stamped.
CREATE OR REPLACE FUNCTION forbid_journal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER journal_transactions_append_only BEFORE UPDATE OR DELETE ON journal_transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE OR REPLACE TRIGGER journal_transactions_no_truncate BEFORE TRUNCATE ON journal_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_journal_change();
CREATE OR REPLACE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE OR REPLACE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_journal_change();
CREATE OR REPLACE TRIGGER periods_append_only BEFORE UPDATE OR DELETE ON periods
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();
CREATE OR REPLACE TRIGGER period_balances_append_only BEFORE UPDATE OR DELETE ON period_balances
    FOR EACH ROW EXECUTE FUNCTION forbid_journal_change();

-- A closed account's totals never move again.
CREATE OR REPLACE FUNCTION refuse_closed_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.closed AND (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
        IS DISTINCT FROM (OLD.debits_posted, OLD.credits_posted, OLD.debits_pending, OLD.credits_pending) THEN
        RAISE EXCEPTION 'account % is closed', OLD.account_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER balances_closed_accounts BEFORE UPDATE ON balances
    FOR EACH ROW EXECUTE FUNCTION refuse_closed_account_change();
