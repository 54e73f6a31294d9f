-- consume() and consume_many() are redefined whole (SQL has no other way to change a
-- function); what changed from 002/003 is marked in the comments below.
--
-- Prepaid credits, exact: the keys service learns each account's available credits from
-- the ledger (ledger.balances) and consumes against them atomically, with the quota and
-- the rate limits, in consume().
--
-- keys' view of what is available = ledger_available - (consumed_total - ledger_usage_total):
-- the ledger's balance at `ledger_version` already reflects `ledger_usage_total` units of
-- usage; anything this service consumed beyond that is still on its way to the ledger.
-- When all events have drained the two numbers agree to the unit.
CREATE TABLE account_credits (
    account_id         text PRIMARY KEY,
    ledger_available   bigint,           -- NULL until the ledger's first balance arrives
    ledger_usage_total bigint NOT NULL DEFAULT 0,
    ledger_version     bigint NOT NULL DEFAULT 0,
    consumed_total     bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO account_credits (account_id, consumed_total)
    SELECT account_id, sum(quota_used) FROM keys WHERE billing = 'prepaid' GROUP BY account_id;

-- Rotation: a new key takes over from the old one, which keeps working for a grace
-- period (until its expires_at) as an alias of the new one.
ALTER TABLE keys ADD COLUMN rotated_to uuid REFERENCES keys (id),
    -- Where a rotated key's successor is delivered (encrypted, through the notifier).
    ADD COLUMN customer_email text,
    ADD COLUMN product_name text;

CREATE OR REPLACE FUNCTION consume(p_hash bytea, p_units bigint, p_consume boolean)
RETURNS TABLE (outcome text, key_id uuid, account_id text, plan text, billing text, quota_limit bigint,
               quota_used bigint, expires_at timestamptz, rate_limit bigint, rate_remaining bigint,
               rate_reset timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k keys%ROWTYPE;
    t timestamptz;
    m_start timestamptz; h_start timestamptz; d_start timestamptz;
    m_req bigint := 0; m_units bigint := 0; h_req bigint := 0; d_req bigint := 0;
    reason text;
    credits account_credits%ROWTYPE;
    target uuid;
BEGIN
    -- A rotated key, within its grace, is an alias of its successor: it consumes the
    -- successor's quota and limits, under the successor's lock. After the grace (its
    -- expires_at) it answers for itself: expired.
    SELECT CASE WHEN r.rotated_to IS NOT NULL AND r.status <> 'revoked'
                     AND (r.expires_at IS NULL OR r.expires_at > clock_timestamp())
                THEN r.rotated_to ELSE r.id END
    INTO target FROM keys r WHERE r.key_hash = p_hash;
    IF p_consume THEN
        SELECT * INTO k FROM keys WHERE id = target FOR UPDATE;
    ELSE
        SELECT * INTO k FROM keys WHERE id = target;
    END IF;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    t := clock_timestamp();
    m_start := date_trunc('minute', t); h_start := date_trunc('hour', t); d_start := date_trunc('day', t);
    IF k.requests_per_minute IS NOT NULL OR k.units_per_minute IS NOT NULL THEN
        SELECT c.requests, c.units INTO m_req, m_units FROM rate_counters c
        WHERE c.key_id = k.id AND c.period = 'minute' AND c.window_start = m_start;
    END IF;
    IF k.requests_per_hour IS NOT NULL THEN
        SELECT c.requests INTO h_req FROM rate_counters c
        WHERE c.key_id = k.id AND c.period = 'hour' AND c.window_start = h_start;
    END IF;
    IF k.requests_per_day IS NOT NULL THEN
        SELECT c.requests INTO d_req FROM rate_counters c
        WHERE c.key_id = k.id AND c.period = 'day' AND c.window_start = d_start;
    END IF;
    m_req := coalesce(m_req, 0); m_units := coalesce(m_units, 0);
    h_req := coalesce(h_req, 0); d_req := coalesce(d_req, 0);
    reason := CASE
        WHEN k.status = 'revoked' THEN 'revoked'
        WHEN k.status = 'suspended' OR k.suspend_at <= t THEN 'suspended'
        WHEN k.expires_at IS NOT NULL AND k.expires_at <= t THEN 'expired'
        WHEN k.quota_limit IS NOT NULL AND k.quota_used + p_units > k.quota_limit THEN 'quota_exceeded'
        WHEN k.requests_per_minute IS NOT NULL AND m_req + 1 > k.requests_per_minute THEN 'rate_limited'
        WHEN k.units_per_minute IS NOT NULL AND m_units + p_units > k.units_per_minute THEN 'rate_limited'
        WHEN k.requests_per_hour IS NOT NULL AND h_req + 1 > k.requests_per_hour THEN 'rate_limited'
        WHEN k.requests_per_day IS NOT NULL AND d_req + 1 > k.requests_per_day THEN 'rate_limited'
    END;
    -- Prepaid credits: what the ledger last said was available, less what this service
    -- consumed that the ledger had not yet booked. Unknown until the ledger's first
    -- balance for the account arrives (the key's quota, the purchased credits, holds).
    IF reason IS NULL AND k.billing = 'prepaid' THEN
        SELECT * INTO credits FROM account_credits a WHERE a.account_id = k.account_id;
        IF FOUND AND credits.ledger_available IS NOT NULL
           AND credits.ledger_available - (credits.consumed_total - credits.ledger_usage_total) < p_units THEN
            reason := 'insufficient_balance';
        END IF;
    END IF;
    IF reason IS NULL AND p_consume THEN
        UPDATE keys SET quota_used = keys.quota_used + p_units WHERE id = k.id RETURNING keys.quota_used INTO k.quota_used;
        IF k.billing = 'prepaid' THEN
            UPDATE account_credits a SET consumed_total = a.consumed_total + p_units WHERE a.account_id = k.account_id;
        END IF;
        IF k.requests_per_minute IS NOT NULL OR k.units_per_minute IS NOT NULL THEN
            INSERT INTO rate_counters AS c VALUES (k.id, 'minute', m_start, 1, p_units)
            ON CONFLICT ON CONSTRAINT rate_counters_pkey DO UPDATE SET requests = c.requests + 1, units = c.units + p_units;
            m_req := m_req + 1;
        END IF;
        IF k.requests_per_hour IS NOT NULL THEN
            INSERT INTO rate_counters AS c VALUES (k.id, 'hour', h_start, 1, p_units)
            ON CONFLICT ON CONSTRAINT rate_counters_pkey DO UPDATE SET requests = c.requests + 1, units = c.units + p_units;
            h_req := h_req + 1;
        END IF;
        IF k.requests_per_day IS NOT NULL THEN
            INSERT INTO rate_counters AS c VALUES (k.id, 'day', d_start, 1, p_units)
            ON CONFLICT ON CONSTRAINT rate_counters_pkey DO UPDATE SET requests = c.requests + 1, units = c.units + p_units;
            d_req := d_req + 1;
        END IF;
    END IF;
    -- The rateLimit answer describes the shortest request window the key has.
    RETURN QUERY SELECT coalesce(reason, 'ok'), k.id, k.account_id, k.plan, k.billing, k.quota_limit,
        k.quota_used, k.expires_at,
        coalesce(k.requests_per_minute, k.requests_per_hour, k.requests_per_day)::bigint,
        CASE WHEN k.requests_per_minute IS NOT NULL THEN greatest(k.requests_per_minute - m_req, 0)
             WHEN k.requests_per_hour IS NOT NULL THEN greatest(k.requests_per_hour - h_req, 0)
             WHEN k.requests_per_day IS NOT NULL THEN greatest(k.requests_per_day - d_req, 0) END,
        CASE WHEN k.requests_per_minute IS NOT NULL THEN m_start + interval '1 minute'
             WHEN k.requests_per_hour IS NOT NULL THEN h_start + interval '1 hour'
             WHEN k.requests_per_day IS NOT NULL THEN d_start + interval '1 day' END;
END $$;

CREATE OR REPLACE FUNCTION consume_many(p_hashes bytea[], p_units bigint[], p_consume boolean[])
RETURNS TABLE (idx int, outcome text, key_id uuid, account_id text, plan text, billing text, quota_limit bigint,
               quota_used bigint, expires_at timestamptz, rate_limit bigint, rate_remaining bigint,
               rate_reset timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i int;
BEGIN
    PERFORM 1 FROM account_credits a
    WHERE a.account_id IN (SELECT k.account_id FROM keys k WHERE k.key_hash = ANY(p_hashes) AND k.billing = 'prepaid')
    ORDER BY a.account_id FOR UPDATE;
    -- Then every key row this batch will consume, in id order (a rotated key's successor
    -- in its place), so batches in any process take row locks in one global order.
    PERFORM 1 FROM keys k WHERE k.id IN (
        SELECT coalesce(r.rotated_to, r.id) FROM keys r WHERE r.key_hash = ANY(p_hashes)
    ) ORDER BY k.id FOR UPDATE;
    FOR i IN SELECT o.n FROM unnest(p_hashes) WITH ORDINALITY AS o(h, n) ORDER BY o.h, o.n LOOP
        RETURN QUERY SELECT i, c.* FROM consume(p_hashes[i], p_units[i], p_consume[i]) AS c;
    END LOOP;
END $$;
