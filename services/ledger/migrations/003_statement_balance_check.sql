-- Check that transactions balance once per INSERT statement instead of once per posting
-- row: a usage batch inserts hundreds of postings in one statement, and the per-row
-- deferred trigger re-summed each transaction for every one of its rows.
-- The rule is now stricter: a transaction's postings must arrive in one statement
-- (the Book always writes them so). A transaction split over two statements is refused.
DROP TRIGGER postings_balanced ON postings;

CREATE FUNCTION assert_statement_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad bigint;
BEGIN
    SELECT p.tx_id INTO bad
    FROM postings p
    WHERE p.tx_id IN (SELECT DISTINCT tx_id FROM new_postings)
    GROUP BY p.tx_id, p.asset
    HAVING sum(p.amount) <> 0
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'journal transaction % does not balance', bad USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER postings_balanced AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION assert_statement_balanced();
