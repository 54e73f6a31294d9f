"""usage-sync's SQL."""

from datetime import datetime

import asyncpg


async def add_to_window(
    conn: asyncpg.Connection, account_id: str, meter: str, start: datetime, end: datetime, value: int, identifier: str
) -> bool:
    """Add to an open window. False if that window has already closed.

    The closer's UPDATE and this upsert lock the same row, so a window is either
    counted before it closes or not at all: never after its value was reported.
    """
    return (
        await conn.fetchval(
            "INSERT INTO usage_windows (account_id, meter, window_start, window_end, value, identifier) "
            "VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (account_id, meter, window_start) DO UPDATE "
            "  SET value = usage_windows.value + EXCLUDED.value, updated_at = now() "
            "  WHERE usage_windows.state = 'open' "
            "RETURNING true",
            account_id,
            meter,
            start,
            end,
            value,
            identifier,
        )
        is not None
    )


async def close_due_windows(conn: asyncpg.Connection, grace_seconds: int) -> int:
    result = await conn.execute(
        "UPDATE usage_windows SET state = 'pending', updated_at = now() "
        "WHERE state = 'open' AND window_end + make_interval(secs => $1) <= now()",
        grace_seconds,
    )
    return int(result.split()[-1])


async def due_reports(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Closed windows to (re)send: pending ones, and 'sent' ones a crash left unconfirmed."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM usage_windows WHERE state IN ('pending', 'sent') AND next_attempt_at <= now() "
        "ORDER BY window_start LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return rows


async def mark(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    state: str,
    *,
    error: str | None = None,
    retry_in_s: float | None = None,
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
        retry_in_s or 0.0,
    )
