-- One transfer as the Book writes it, in one transaction (book.py, outbox.add_many): pgbench's
-- script for `make bench-transfers`' limit. {wallets} is filled in.
\set a random(1, {wallets})
BEGIN;
SELECT seq FROM chain_head FOR UPDATE \gset
SELECT max(period) FROM periods;
SELECT b.account_id, b.debits_posted, b.credits_posted, b.version FROM balances b JOIN accounts a ON a.id = b.account_id WHERE b.account_id = ANY(ARRAY['wallet:' || :a, 'wallet:' || (:a % {wallets} + 1)]);
SELECT idempotency_key FROM journal_transactions WHERE idempotency_key = 'pg:' || (:seq + 1);
INSERT INTO journal_transactions (seq, idempotency_key, kind, business_time, created_at, period, prev_hash, hash) SELECT :seq + 1, 'pg:' || (:seq + 1), 'transfer', now(), now(), to_char(now(), 'YYYY-MM'), hash, sha256(hash || convert_to((:seq + 1)::text, 'UTF8')) FROM chain_head RETURNING id AS tx \gset
INSERT INTO postings (tx_id, account_id, asset, amount) VALUES (:tx, 'wallet:' || :a, 'EUR/2', 1), (:tx, 'wallet:' || (:a % {wallets} + 1), 'EUR/2', -1);
UPDATE chain_head SET seq = :seq + 1, hash = sha256(hash || convert_to((:seq + 1)::text, 'UTF8'));
UPDATE balances b SET debits_posted = b.debits_posted + d.dp, credits_posted = b.credits_posted + d.cp, version = b.version + 1 FROM (VALUES ('wallet:' || :a, 1, 0), ('wallet:' || (:a % {wallets} + 1), 0, 1)) AS d(id, dp, cp) WHERE b.account_id = d.id RETURNING b.account_id, b.version;
INSERT INTO outbox (topic, key, event_id, payload) VALUES ('ledger.balances', 'wallet:' || :a, gen_random_uuid(), '{"event_type": "BalanceUpdated", "ledger_account": "wallet", "asset": "EUR/2", "current": 1, "pending": 0, "available": 1, "version": 1}'), ('ledger.balances', 'wallet:' || (:a % {wallets} + 1), gen_random_uuid(), '{"event_type": "BalanceUpdated", "ledger_account": "wallet", "asset": "EUR/2", "current": 1, "pending": 0, "available": 1, "version": 1}');
COMMIT;
