-- Validation: every rule that decides whether a key may be used, in one place.
--
-- consume_batch() decides a batch of requests (p_consume true: consuming, under row
-- locks; false: only checking, nothing locked or written, so the rules exist once).
-- A request is refused for the first of revoked, suspended, expired, quota_exceeded,
-- rate_limited (minute requests, minute units, hour, day) or insufficient_balance that
-- applies; requests for one key are decided in the order they arrived, each seeing the
-- ones before it. Deciding and consuming are one atomic step under the key's row lock,
-- so any number of concurrent callers and replicas stay exact.
--
-- Rate windows are fixed and aligned to the clock (UTC minute, hour, day): exact and
-- auditable (a window holds at most N, provably), one set of counters per key, and no
-- clock arithmetic across replicas, since every consumer of a key serialises on its row
-- lock and reads the clock after taking it. The known cost is the boundary burst: up to
-- 2N around a window edge; a plan that must bound bursts adds a shorter window.
--
-- A batch consumes only under locks it holds, even across a rotation. The lock
-- statements resolve a rotated key to its successor with the snapshot they started
-- with; if the rotation commits while the batch waits for the old key's lock, the later
-- read resolves the old key to a successor the batch never locked, and a caller of the
-- successor would lose its count to the batch's UPDATE. So the batch remembers what it
-- locked and, before deciding a key or an account it did not lock, gives up with a
-- serialization failure: nothing is written, and the service runs the batch again,
-- which then locks the successor. Taking the missing lock on the spot instead would
-- break the one global lock order that keeps batches from deadlocking.

CREATE OR REPLACE FUNCTION consume_batch(p_hashes bytea[], p_units bigint[], p_consume boolean)
RETURNS TABLE (idx int, outcome text, key_id uuid, account_id text, plan text, billing text, quota_limit bigint,
               quota_used bigint, expires_at timestamptz, rate_limit bigint, rate_remaining bigint,
               rate_reset timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    m_start timestamptz := date_trunc('minute', t);
    h_start timestamptz := date_trunc('hour', t);
    d_start timestamptz := date_trunc('day', t);
    r record;
    reason text;
    -- The key being decided and its windows, as the requests before this one left them.
    cur uuid;
    used bigint; m_req bigint; m_units bigint; h_req bigint; d_req bigint;
    -- The prepaid account being decided: what this service has consumed of its credits.
    cur_account text;
    spent bigint;
    -- Running totals after each accepted request; the last one per key is what gets written.
    w_keys uuid[] := '{}'; w_used bigint[] := '{}';
    w_m_req bigint[] := '{}'; w_m_units bigint[] := '{}'; w_h_req bigint[] := '{}'; w_d_req bigint[] := '{}';
    w_accounts text[] := '{}'; w_spent bigint[] := '{}';
    -- What the lock statements locked; only these may be consumed.
    locked_keys uuid[]; locked_accounts text[];
BEGIN
    IF p_consume THEN
        -- Accounts first, then keys in id order (a rotated key's successor in its place):
        -- batches in any process take row locks in one global order, so none deadlock.
        locked_accounts := ARRAY(
            SELECT a.account_id FROM account_credits a
            WHERE a.account_id IN (SELECT k.account_id FROM keys k WHERE k.key_hash = ANY(p_hashes) AND k.billing = 'prepaid')
            ORDER BY a.account_id FOR UPDATE);
        locked_keys := ARRAY(
            SELECT k.id FROM keys k WHERE k.id IN (
                SELECT coalesce(a.rotated_to, a.id) FROM keys a WHERE a.key_hash = ANY(p_hashes)
            ) ORDER BY k.id FOR UPDATE);
    END IF;
    -- A new statement, so a new snapshot: it sees what the lock holders before us committed.
    FOR r IN
        SELECT q.n::int AS n, q.units, k.id, k.account_id AS account, k.plan AS key_plan, k.billing AS key_billing,
               k.quota_limit AS q_limit, k.quota_used AS q_used, k.expires_at AS key_expires, k.status, k.suspend_at,
               k.requests_per_minute AS rpm, k.units_per_minute AS upm, k.requests_per_hour AS rph,
               k.requests_per_day AS rpd,
               -- A window the clock has left counts from zero.
               CASE WHEN k.minute_start = m_start THEN k.minute_requests ELSE 0 END AS m_req0,
               CASE WHEN k.minute_start = m_start THEN k.minute_units ELSE 0 END AS m_units0,
               CASE WHEN k.hour_start = h_start THEN k.hour_requests ELSE 0 END AS h_req0,
               CASE WHEN k.day_start = d_start THEN k.day_requests ELSE 0 END AS d_req0,
               ac.ledger_available, ac.ledger_usage_total, ac.consumed_total
        FROM unnest(p_hashes, p_units) WITH ORDINALITY AS q(h, units, n)
        LEFT JOIN keys alias ON alias.key_hash = q.h
        -- A rotated key, within its grace, is an alias of its successor: it consumes the
        -- successor's quota and limits. After the grace (its expires_at) it answers for
        -- itself: expired.
        LEFT JOIN keys k ON k.id = CASE
            WHEN alias.rotated_to IS NOT NULL AND alias.status <> 'revoked'
                 AND (alias.expires_at IS NULL OR alias.expires_at > t) THEN alias.rotated_to
            ELSE alias.id END
        LEFT JOIN account_credits ac ON ac.account_id = k.account_id AND k.billing = 'prepaid'
        ORDER BY k.account_id, k.id, q.n
    LOOP
        idx := r.n;
        IF r.id IS NULL THEN
            outcome := 'not_found';
            key_id := NULL; account_id := NULL; plan := NULL; billing := NULL; quota_limit := NULL;
            quota_used := NULL; expires_at := NULL; rate_limit := NULL; rate_remaining := NULL; rate_reset := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF r.id IS DISTINCT FROM cur THEN
            IF p_consume AND NOT r.id = ANY(locked_keys) THEN
                RAISE EXCEPTION 'key % was not locked by this batch (rotated while it waited?)', r.id
                    USING ERRCODE = 'serialization_failure', HINT = 'Run the batch again.';
            END IF;
            cur := r.id; used := r.q_used;
            m_req := r.m_req0; m_units := r.m_units0; h_req := r.h_req0; d_req := r.d_req0;
        END IF;
        IF r.key_billing = 'prepaid' AND r.account IS DISTINCT FROM cur_account THEN
            IF p_consume AND NOT r.account = ANY(locked_accounts) THEN
                RAISE EXCEPTION 'account % was not locked by this batch', r.account
                    USING ERRCODE = 'serialization_failure', HINT = 'Run the batch again.';
            END IF;
            cur_account := r.account; spent := r.consumed_total;
        END IF;
        reason := CASE
            WHEN r.status = 'revoked' THEN 'revoked'
            WHEN r.status = 'suspended' OR r.suspend_at <= t THEN 'suspended'
            WHEN r.key_expires IS NOT NULL AND r.key_expires <= t THEN 'expired'
            WHEN r.q_limit IS NOT NULL AND used + r.units > r.q_limit THEN 'quota_exceeded'
            WHEN r.rpm IS NOT NULL AND m_req + 1 > r.rpm THEN 'rate_limited'
            WHEN r.upm IS NOT NULL AND m_units + r.units > r.upm THEN 'rate_limited'
            WHEN r.rph IS NOT NULL AND h_req + 1 > r.rph THEN 'rate_limited'
            WHEN r.rpd IS NOT NULL AND d_req + 1 > r.rpd THEN 'rate_limited'
            -- Prepaid credits: what the ledger last said was available, less what this
            -- service consumed that the ledger had not yet booked (account_credits).
            -- No gate until the ledger's first balance for the account arrives.
            WHEN r.key_billing = 'prepaid' AND r.ledger_available IS NOT NULL
                 AND r.ledger_available - (spent - r.ledger_usage_total) < r.units THEN 'insufficient_balance'
        END;
        IF reason IS NULL AND p_consume THEN
            used := used + r.units;
            -- Every window counts every accepted call, limited or not: a limit added to
            -- the key later starts from what really happened in its window.
            m_req := m_req + 1; m_units := m_units + r.units; h_req := h_req + 1; d_req := d_req + 1;
            w_keys := w_keys || r.id; w_used := w_used || used;
            w_m_req := w_m_req || m_req; w_m_units := w_m_units || m_units;
            w_h_req := w_h_req || h_req; w_d_req := w_d_req || d_req;
            IF r.key_billing = 'prepaid' THEN
                spent := spent + r.units;
                w_accounts := w_accounts || r.account; w_spent := w_spent || spent;
            END IF;
        END IF;
        outcome := coalesce(reason, 'ok');
        key_id := r.id; account_id := r.account; plan := r.key_plan; billing := r.key_billing;
        quota_limit := r.q_limit; quota_used := used; expires_at := r.key_expires;
        -- The rateLimit answer describes the shortest request window the key has.
        rate_limit := coalesce(r.rpm, r.rph, r.rpd);
        rate_remaining := CASE WHEN r.rpm IS NOT NULL THEN greatest(r.rpm - m_req, 0)
                               WHEN r.rph IS NOT NULL THEN greatest(r.rph - h_req, 0)
                               WHEN r.rpd IS NOT NULL THEN greatest(r.rpd - d_req, 0) END;
        rate_reset := CASE WHEN r.rpm IS NOT NULL THEN m_start + interval '1 minute'
                           WHEN r.rph IS NOT NULL THEN h_start + interval '1 hour'
                           WHEN r.rpd IS NOT NULL THEN d_start + interval '1 day' END;
        RETURN NEXT;
    END LOOP;
    IF cardinality(w_keys) = 0 THEN
        RETURN;
    END IF;
    -- Each key and account once, at its totals after the batch (totals only rise within
    -- a batch, so the largest is the last). The locks taken above are held, so no one
    -- else moved them meanwhile.
    UPDATE keys k SET quota_used = w.used,
        minute_start = m_start, minute_requests = w.m_req, minute_units = w.m_units,
        hour_start = h_start, hour_requests = w.h_req, day_start = d_start, day_requests = w.d_req
    FROM (SELECT u.id, max(u.used) AS used, max(u.m_req) AS m_req, max(u.m_units) AS m_units,
                 max(u.h_req) AS h_req, max(u.d_req) AS d_req
          FROM unnest(w_keys, w_used, w_m_req, w_m_units, w_h_req, w_d_req) AS u(id, used, m_req, m_units, h_req, d_req)
          GROUP BY u.id) w
    WHERE k.id = w.id;
    IF cardinality(w_accounts) > 0 THEN
        UPDATE account_credits a SET consumed_total = w.spent
        FROM (SELECT u.account_id, max(u.spent) AS spent FROM unnest(w_accounts, w_spent) AS u(account_id, spent)
              GROUP BY u.account_id) w
        WHERE a.account_id = w.account_id;
    END IF;
END $$;


-- consume_and_record() runs consume_batch() and writes the accepted calls' usage events
-- to the outbox in one statement: its own implicit transaction, and PostgreSQL answers
-- only after the commit, so every answer follows its usage event's durable write.
-- plpgsql rather than sql: plpgsql keeps its statements' plans for the session, while
-- a sql function plans them again on every call.
CREATE OR REPLACE FUNCTION consume_and_record(p_hashes bytea[], p_units bigint[], p_routes text[],
                                              p_methods text[], p_statuses int[])
RETURNS TABLE (idx int, outcome text, key_id uuid, account_id text, plan text, billing text, quota_limit bigint,
               quota_used bigint, expires_at timestamptz, rate_limit bigint, rate_remaining bigint,
               rate_reset timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH decided AS (
        SELECT * FROM consume_batch(p_hashes, p_units, true)
    ), recorded AS (
        -- The payload is UsageRecorded's JSON (tollgate_shared.contracts.keys); an
        -- integration test parses it with the contract and compares the field set.
        -- Ordered so that, per key, outbox ids (the relay's publishing order) rise with
        -- key_units_total: consumers drop re-published duplicates by that watermark.
        INSERT INTO outbox (topic, key, event_id, payload)
        SELECT 'usage.recorded', r.account_id, r.event_id,
               jsonb_build_object(
                   'event_id', r.event_id,
                   'schema_version', 1,
                   'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'correlation_id', NULL,
                   'causation_id', NULL,
                   'event_type', 'UsageRecorded',
                   'key_id', r.key_id,
                   'account_id', r.account_id,
                   'plan', r.plan,
                   'billing', r.billing,
                   'units', p_units[r.idx],
                   'key_units_total', r.quota_used,
                   'route', p_routes[r.idx],
                   'method', p_methods[r.idx],
                   'status', p_statuses[r.idx])
        FROM (SELECT d.*, gen_random_uuid() AS event_id FROM decided d WHERE d.outcome = 'ok') r
        ORDER BY r.key_id, r.quota_used
    )
    SELECT * FROM decided;
END $$;

-- A batch is always a handful of point lookups by unique index, but a custom plan, which
-- knows the batch size, always looks cheaper than the generic one and is re-planned on
-- every call. So the plans are pinned: generic (planned once per connection), index
-- access only.
ALTER FUNCTION consume_batch(bytea[], bigint[], boolean)
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION consume_and_record(bytea[], bigint[], text[], text[], int[]) SET plan_cache_mode = force_generic_plan;
