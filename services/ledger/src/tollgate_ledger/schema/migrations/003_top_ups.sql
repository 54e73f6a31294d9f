-- Customers' credits are spendable by the optimistic rule from now on: their only pending
-- inflows are top-ups being charged (new), which a customer may spend at once. Until now
-- they had no pending inflows, so no balance changes by this.
UPDATE accounts SET spend_rule = 'optimistic' WHERE id LIKE 'customer:%:credits' AND spend_rule = 'conservative';
