-- The ledger's own role books entries but never changes one: the journal, its postings
-- and what a period close stamped are insert and read only (journal_rules.sql refuses
-- edits too, and only the schema's owner could drop those triggers).
REVOKE UPDATE, DELETE, TRUNCATE ON journal_transactions, postings, periods, period_balances FROM :role;
