"""usage-sync's SQL."""

from collections import defaultdict
from datetime import datetime

import asyncpg

from tollgate_shared import db

from .domain import WindowKey


async def lock_closed_windows(conn: asyncpg.Connection, keys: list[WindowKey]) -> set[WindowKey]:
    """Lock the batch's existing windows (in key order, as the closer does) and return the
    ones no longer open. Holding the locks until commit means a window cannot close
    between this check and the batch's update."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT w.account_id, w.meter, w.window_start, w.state FROM usage_windows w "
        "JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS t(a, m, s) "
        "  ON w.account_id = t.a AND w.meter = t.m AND w.window_start = t.s "
        "ORDER BY w.account_id, w.meter, w.window_start FOR UPDATE OF w",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    return {(r["account_id"], r["meter"], r["window_start"]) for r in rows if r["state"] != "open"}


async def add_members(conn: asyncpg.Connection, members: dict[WindowKey, set[str]]) -> dict[WindowKey, int]:
    """Record unique members; returns how many were new per window."""
    rows = [(*key, member) for key, names in members.items() for member in names]
    if not rows:
        return {}
    inserted = await conn.fetch(
        "INSERT INTO usage_window_members (account_id, meter, window_start, member) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) "
        "ON CONFLICT DO NOTHING RETURNING account_id, meter, window_start",
        *[list(col) for col in zip(*rows, strict=True)],
    )
    new: dict[WindowKey, int] = defaultdict(int)
    for r in inserted:
        new[(r["account_id"], r["meter"], r["window_start"])] += 1
    return new


async def add_to_windows(conn: asyncpg.Connection, rows: list[tuple[str, str, datetime, datetime, int, str]]) -> None:
    if rows:
        await conn.execute(
            "INSERT INTO usage_windows (account_id, meter, window_start, window_end, value, identifier) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], "
            "$6::text[]) ON CONFLICT (account_id, meter, window_start) DO UPDATE "
            "SET value = usage_windows.value + EXCLUDED.value, updated_at = now()",
            *[list(col) for col in zip(*rows, strict=True)],
        )


async def close_due_windows(conn: asyncpg.Connection, grace_seconds: int) -> int:
    result = await conn.execute(
        "UPDATE usage_windows SET state = 'pending', updated_at = now() WHERE (account_id, meter, window_start) IN ("
        "  SELECT account_id, meter, window_start FROM usage_windows "
        "  WHERE state = 'open' AND window_end + make_interval(secs => $1) <= now() "
        "  ORDER BY account_id, meter, window_start FOR UPDATE)",
        grace_seconds,
    )
    return db.affected(result)


async def lease_due_reports(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Closed windows to (re)send, marked 'sent' with a lease.

    'sent' commits before the call: after a crash the row is re-sent when its lease
    ends, and the deterministic identifier makes the re-send a no-op at Stripe. The
    lease keeps another replica from sending the same window meanwhile.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        "UPDATE usage_windows SET state = 'sent', next_attempt_at = now() + make_interval(secs => $2), "
        "  updated_at = now() "
        "WHERE (account_id, meter, window_start) IN ("
        "  SELECT account_id, meter, window_start FROM usage_windows "
        "  WHERE state IN ('pending', 'sent') AND next_attempt_at <= now() "
        "  ORDER BY window_start LIMIT $1 FOR UPDATE SKIP LOCKED) "
        "RETURNING *",
        limit,
        lease_s,
    )
    return rows


async def mark(
    conn: asyncpg.Connection, row: asyncpg.Record, state: str, *, error: str | None = None, retry_in_s: float = 0.0
) -> None:
    await conn.execute(
        "UPDATE usage_windows SET state = $4, error = $5, attempts = attempts + 1, updated_at = now(), "
        "  next_attempt_at = now() + make_interval(secs => $6) "
        "WHERE account_id = $1 AND meter = $2 AND window_start = $3",
        row["account_id"],
        row["meter"],
        row["window_start"],
        state,
        error,
        retry_in_s,
    )


async def reopen_for_backfill(
    conn: asyncpg.Connection, start: datetime, end: datetime, account_id: str | None = None
) -> int:
    """Queue again the period's windows Stripe refused. A confirmed window is billed and is
    never sent again: Stripe keeps an identifier for at least a day, not forever, so a
    re-send could bill it twice. (Windows still pending or sent go out by themselves.)"""
    result = await conn.execute(
        "UPDATE usage_windows SET state = 'pending', next_attempt_at = now(), error = NULL, updated_at = now() "
        "WHERE state = 'failed' AND window_start >= $1 AND window_start < $2 "
        "  AND ($3::text IS NULL OR account_id = $3)",
        start,
        end,
        account_id,
    )
    return db.affected(result)


async def usage_in(
    conn: asyncpg.Connection, start: datetime, end: datetime, account_id: str | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, meter, sum(value)::bigint AS value, count(*) AS windows, "
        "  count(*) FILTER (WHERE state = 'confirmed') AS confirmed, "
        "  count(*) FILTER (WHERE state = 'failed') AS failed, "
        "  string_agg(error, '; ') FILTER (WHERE state = 'failed') AS errors "
        "FROM usage_windows WHERE window_start >= $1 AND window_start < $2 "
        "  AND ($3::text IS NULL OR account_id = $3) "
        "GROUP BY account_id, meter ORDER BY account_id, meter",
        start,
        end,
        account_id,
    )
    return rows
