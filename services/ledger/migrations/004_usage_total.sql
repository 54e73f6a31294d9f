-- Cumulative usage units booked against a customer's credits account (burned or
-- overdrawn), published with its balance: the keys service subtracts what it consumed
-- beyond this from the available balance, so it can gate spending before the ledger
-- has caught up.
ALTER TABLE balances ADD COLUMN usage_total bigint NOT NULL DEFAULT 0 CHECK (usage_total >= 0);
