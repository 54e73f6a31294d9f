-- A lost dispute takes back the credits of the pack it disputed, as a refund does: the
-- money returned to the customer by both, which decides the share of the grant taken back.
ALTER TABLE credit_grants ADD COLUMN disputed_minor bigint NOT NULL DEFAULT 0;
