"""Anonymous checkouts, limited per client address and per email: each one creates a
Stripe customer, so an anonymous caller may start only so many an hour. Fixed windows in
PostgreSQL, so every replica counts together."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from tollgate_shared.http import ApiError


@dataclass(frozen=True)
class Limits:
    per_address: int
    per_email: int
    window: timedelta = timedelta(hours=1)


async def admit_anonymous(pool: asyncpg.Pool, limits: Limits, address: str, email: str) -> None:
    """Count one checkout for the address and the email; 429 with Retry-After if either
    has had its fill in this window."""
    now = datetime.now(UTC)
    seconds = limits.window.total_seconds()
    window_start = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
    async with pool.acquire() as conn, conn.transaction():
        counts = await conn.fetch(
            "INSERT INTO checkout_attempts (scope, subject, window_start, attempts) "
            "VALUES ('address', $1, $3, 1), ('email', $2, $3, 1) "
            "ON CONFLICT (scope, subject, window_start) DO UPDATE "
            "SET attempts = checkout_attempts.attempts + 1 RETURNING scope, attempts",
            address,
            email.lower(),
            window_start,
        )
        await conn.execute("DELETE FROM checkout_attempts WHERE window_start < $1", window_start)
    allowed = {"address": limits.per_address, "email": limits.per_email}
    over = sorted(r["scope"] for r in counts if r["attempts"] > allowed[r["scope"]])
    if over:
        retry = int((window_start + limits.window - now).total_seconds()) + 1
        raise ApiError(
            429,
            "too_many_checkouts",
            f"too many checkouts from this {' and this '.join(over)}; try again later",
            {"Retry-After": str(retry)},
        )
