-- Group commit: many validations checked and consumed in one call and one transaction.
-- Keys are taken in hash order, so batches running at the same time (in this process or
-- another) lock rows in one global order and cannot deadlock; each request is still
-- decided alone under its key's lock, so the limits stay exact. Results carry the
-- request's position so the caller can answer each one.
CREATE FUNCTION consume_many(p_hashes bytea[], p_units bigint[], p_consume boolean[])
RETURNS TABLE (idx int, outcome text, key_id uuid, account_id text, plan text, billing text, quota_limit bigint,
               quota_used bigint, expires_at timestamptz, rate_limit bigint, rate_remaining bigint,
               rate_reset timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i int;
BEGIN
    FOR i IN SELECT o.n FROM unnest(p_hashes) WITH ORDINALITY AS o(h, n) ORDER BY o.h, o.n LOOP
        RETURN QUERY SELECT i, c.* FROM consume(p_hashes[i], p_units[i], p_consume[i]) AS c;
    END LOOP;
END $$;
