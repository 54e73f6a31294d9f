-- Revenue recognition in money: each paid grant's price per credit is what it paid over
-- what it granted; credits leaving it by use or expiry move that much money from the
-- customer's prepaid (deferred revenue) to revenue, first credits in first recognised.
-- A grant keeps what it has recognised, and what refunds and lost disputes took back
-- out of its prepaid money, so neither can take more than the grant still holds.
ALTER TABLE credit_grants
    ADD COLUMN recognised_units bigint NOT NULL DEFAULT 0 CHECK (recognised_units >= 0),
    ADD COLUMN recognised_minor bigint NOT NULL DEFAULT 0 CHECK (recognised_minor >= 0),
    ADD COLUMN returned_minor   bigint NOT NULL DEFAULT 0 CHECK (returned_minor >= 0);
-- Credits used before recognition existed were never recognised in money: their money
-- stays deferred; recognition counts from here on, so nothing is recognised twice.
UPDATE credit_grants SET recognised_units = granted - remaining WHERE paid_minor IS NOT NULL;
-- Refunds and lost disputes took their money out of prepaid while nothing was recognised.
UPDATE credit_grants SET returned_minor = least(paid_minor, refunded_minor + disputed_minor)
WHERE paid_minor IS NOT NULL;
