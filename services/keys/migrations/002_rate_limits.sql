-- Rate limits from plan features, enforced together with the quota in one function.
--
-- Window semantics: fixed windows aligned to the clock (UTC minute, hour, day). Chosen
-- over sliding windows and GCRA because they are exact and auditable (a window holds at
-- most N, provably, and the counter rows say who used what when), cost one row per key
-- per window, and need no clock arithmetic across replicas: every consumer of a key
-- serialises on the key's row lock and reads the clock after taking it. The known cost
-- is the boundary burst: up to 2N in the two seconds around a window edge. Plans that
-- must bound bursts add a shorter window (api:rate:minute beside api:rate:hour).

ALTER TABLE keys
    ADD COLUMN requests_per_minute int CHECK (requests_per_minute > 0),
    ADD COLUMN requests_per_hour   int CHECK (requests_per_hour > 0),
    ADD COLUMN requests_per_day    int CHECK (requests_per_day > 0),
    ADD COLUMN units_per_minute    int CHECK (units_per_minute > 0),
    -- What payment events refer to: the subscription (metered) or the payment (packs).
    ADD COLUMN subscription_id     text,
    ADD COLUMN payment_intent_id   text,
    -- Set when an invoice fails: the key stops at this time unless a payment arrives first.
    ADD COLUMN suspend_at          timestamptz;
CREATE INDEX keys_subscription ON keys (subscription_id) WHERE subscription_id IS NOT NULL;
CREATE INDEX keys_payment_intent ON keys (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

UPDATE keys SET
    requests_per_minute = (SELECT substring(f FROM '^api:rate:minute:(\d+)$')::int FROM unnest(features) f
                           WHERE f ~ '^api:rate:minute:\d+$' LIMIT 1),
    requests_per_hour   = (SELECT substring(f FROM '^api:rate:hour:(\d+)$')::int FROM unnest(features) f
                           WHERE f ~ '^api:rate:hour:\d+$' LIMIT 1),
    requests_per_day    = (SELECT substring(f FROM '^api:rate:day:(\d+)$')::int FROM unnest(features) f
                           WHERE f ~ '^api:rate:day:\d+$' LIMIT 1),
    units_per_minute    = (SELECT substring(f FROM '^api:units:minute:(\d+)$')::int FROM unnest(features) f
                           WHERE f ~ '^api:units:minute:\d+$' LIMIT 1);

CREATE TABLE rate_counters (
    key_id       uuid        NOT NULL REFERENCES keys (id),
    period       text        NOT NULL CHECK (period IN ('minute', 'hour', 'day')),
    window_start timestamptz NOT NULL,
    requests     bigint      NOT NULL DEFAULT 0,
    units        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period, window_start)
);

-- Check, and if everything allows it consume, in one round trip.
--
-- The key row is locked first (FOR UPDATE when consuming), so every consumer of one
-- key, in any process, runs this body one at a time; the clock is read after the lock,
-- so windows are assigned in the order consumption really happened. Either every limit
-- allows the request and all counters and the quota move together, or the request is
-- refused with the first reason and nothing changes.
CREATE FUNCTION consume(p_hash bytea, p_units bigint, p_consume boolean)
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
BEGIN
    IF p_consume THEN
        SELECT * INTO k FROM keys WHERE key_hash = p_hash FOR UPDATE;
    ELSE
        SELECT * INTO k FROM keys WHERE key_hash = p_hash;
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
    IF reason IS NULL AND p_consume THEN
        UPDATE keys SET quota_used = keys.quota_used + p_units WHERE id = k.id RETURNING keys.quota_used INTO k.quota_used;
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

-- Packs bought again by a customer who already holds a key for the plan top that key up.
-- One row per paid Checkout Session: a redelivered payment adds nothing.
CREATE TABLE key_topups (
    source_ref text PRIMARY KEY,
    key_id     uuid        NOT NULL REFERENCES keys (id),
    credits    bigint      NOT NULL CHECK (credits > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
