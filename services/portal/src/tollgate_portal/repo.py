"""The portal's SQL: customers, sign-in links, sessions, request limits, auto-recharge
rules, and usage per key and hour."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from tollgate_shared import db
from tollgate_shared.contracts import UsageIntake


@dataclass(frozen=True)
class Customer:
    account_id: str
    email: str
    name: str


async def add_customer(conn: asyncpg.Connection, account_id: str, email: str, name: str) -> None:
    """Known from now on (an account or an address already known stays as it was)."""
    await conn.execute(
        "INSERT INTO customers (account_id, email, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        account_id,
        email.lower(),
        name,
    )


async def customer_by_email(conn: asyncpg.Connection, email: str) -> Customer | None:
    row = await conn.fetchrow("SELECT account_id, email, name FROM customers WHERE email = $1", email.lower())
    return Customer(**row) if row else None


async def customer(conn: asyncpg.Connection, account_id: str) -> Customer | None:
    row = await conn.fetchrow("SELECT account_id, email, name FROM customers WHERE account_id = $1", account_id)
    return Customer(**row) if row else None


async def add_link(conn: asyncpg.Connection, token_hash: bytes, account_id: str, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO sign_in_links (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
        token_hash,
        account_id,
        expires_at,
    )


async def use_link(conn: asyncpg.Connection, token_hash: bytes) -> str | None:
    """The account a link opens, marking it used; None if unknown, used or expired."""
    found: str | None = await conn.fetchval(
        "UPDATE sign_in_links SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL "
        "AND expires_at > now() RETURNING account_id",
        token_hash,
    )
    return found


async def add_session(conn: asyncpg.Connection, id_hash: bytes, account_id: str, csrf: str) -> None:
    await conn.execute(
        "INSERT INTO sessions (id_hash, account_id, csrf) VALUES ($1, $2, $3)", id_hash, account_id, csrf
    )


async def live_session(conn: asyncpg.Connection, id_hash: bytes, max_age_days: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE sessions SET seen_at = now() WHERE id_hash = $1 AND revoked_at IS NULL "
        "AND created_at > now() - make_interval(days => $2) RETURNING account_id, csrf",
        id_hash,
        max_age_days,
    )
    return row


async def revoke_session(conn: asyncpg.Connection, id_hash: bytes) -> None:
    await conn.execute("UPDATE sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL", id_hash)


async def revoke_all_sessions(conn: asyncpg.Connection, account_id: str) -> int:
    result = await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE account_id = $1 AND revoked_at IS NULL", account_id
    )
    return db.affected(result)


async def count_request(conn: asyncpg.Connection, scope: str, subject: str, window_start: datetime) -> int:
    """Count one sign-up or sign-in request; how many this window has seen, this one included."""
    seen: int = await conn.fetchval(
        "INSERT INTO link_requests (scope, subject, window_start, requests) VALUES ($1, $2, $3, 1) "
        "ON CONFLICT (scope, subject, window_start) DO UPDATE SET requests = link_requests.requests + 1 "
        "RETURNING requests",
        scope,
        subject,
        window_start,
    )
    await conn.execute("DELETE FROM link_requests WHERE window_start < $1", window_start)
    return seen


# --- auto-recharge -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    account_id: str
    enabled: bool
    threshold: int
    amount_minor: int
    daily_cap: int
    armed: bool
    crossings: int
    paused: str | None


async def rule(conn: asyncpg.Connection, account_id: str, *, lock: bool = False) -> Rule | None:
    row = await conn.fetchrow(
        "SELECT account_id, enabled, threshold, amount_minor, daily_cap, armed, crossings, paused "
        f"FROM auto_recharge WHERE account_id = $1{' FOR UPDATE' if lock else ''}",
        account_id,
    )
    return Rule(**row) if row else None


async def save_rule(
    conn: asyncpg.Connection, account_id: str, enabled: bool, threshold: int, amount_minor: int, daily_cap: int
) -> None:
    """Set the rule; saving it lifts a pause and arms it again."""
    await conn.execute(
        "INSERT INTO auto_recharge (account_id, enabled, threshold, amount_minor, daily_cap) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id) DO UPDATE SET enabled = $2, threshold = $3, "
        "amount_minor = $4, daily_cap = $5, armed = true, paused = NULL, updated_at = now()",
        account_id,
        enabled,
        threshold,
        amount_minor,
        daily_cap,
    )


async def set_armed(conn: asyncpg.Connection, account_id: str, armed: bool, *, crossed: bool = False) -> None:
    await conn.execute(
        "UPDATE auto_recharge SET armed = $2, crossings = crossings + $3::int WHERE account_id = $1",
        account_id,
        armed,
        1 if crossed else 0,
    )


async def pause(conn: asyncpg.Connection, account_id: str, reason: str) -> None:
    await conn.execute(
        "UPDATE auto_recharge SET paused = $2, updated_at = now() WHERE account_id = $1", account_id, reason
    )


async def fired_today(conn: asyncpg.Connection, account_id: str) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM recharges WHERE account_id = $1 AND fired_at > now() - interval '1 day'", account_id
    )
    return n


async def record_recharge(conn: asyncpg.Connection, crossing: str, account_id: str) -> bool:
    """False if this crossing already fired (a redelivered balance)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO recharges (id, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            crossing,
            account_id,
        )
    )


async def recharge_outcome(conn: asyncpg.Connection, crossing: str, top_up_id: str, outcome: str) -> None:
    await conn.execute("UPDATE recharges SET top_up_id = $2, outcome = $3 WHERE id = $1", crossing, top_up_id, outcome)


async def recharges_of(conn: asyncpg.Connection, account_id: str, limit: int = 10) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, fired_at, top_up_id, outcome FROM recharges WHERE account_id = $1 ORDER BY fired_at DESC LIMIT $2",
        account_id,
        limit,
    )
    return rows


async def newer_balance(conn: asyncpg.Connection, account_id: str, version: int) -> bool:
    """Whether this balance is newer than any seen for the account (and remember it)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO balance_versions (account_id, version) VALUES ($1, $2) ON CONFLICT (account_id) "
            "DO UPDATE SET version = EXCLUDED.version WHERE balance_versions.version < EXCLUDED.version RETURNING true",
            account_id,
            version,
        )
    )


# --- usage --------------------------------------------------------------------------------------


@dataclass
class _HourSum:
    calls: int
    units: int
    last_at: datetime


async def add_usage(conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    """Sum a batch per account, key and hour, and add it."""
    sums: dict[tuple[str, str, datetime], _HourSum] = {}
    for u in usages:
        hour = u.occurred_at.replace(minute=0, second=0, microsecond=0)
        s = sums.setdefault((u.account_id, u.key_id, hour), _HourSum(0, 0, u.occurred_at))
        s.calls, s.units, s.last_at = s.calls + 1, s.units + u.units, max(s.last_at, u.occurred_at)
    if not sums:
        return
    keys = sorted(sums)
    await conn.execute(
        "INSERT INTO key_usage_hourly (account_id, key_id, hour, calls, units, last_at) "
        "SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::bigint[], $5::bigint[], "
        "$6::timestamptz[]) ON CONFLICT (account_id, hour, key_id) DO UPDATE SET "
        "calls = key_usage_hourly.calls + EXCLUDED.calls, units = key_usage_hourly.units + EXCLUDED.units, "
        "last_at = greatest(key_usage_hourly.last_at, EXCLUDED.last_at)",
        [k[0] for k in keys],
        [UUID(k[1]) for k in keys],
        [k[2] for k in keys],
        [sums[k].calls for k in keys],
        [sums[k].units for k in keys],
        [sums[k].last_at for k in keys],
    )


async def usage_since(conn: asyncpg.Connection, account_id: str, since: datetime) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT hour, key_id, calls, units FROM key_usage_hourly WHERE account_id = $1 AND hour >= $2 "
        "ORDER BY hour, key_id",
        account_id,
        since,
    )
    return rows


async def last_used(conn: asyncpg.Connection, account_id: str) -> dict[UUID, datetime]:
    rows = await conn.fetch(
        "SELECT key_id, max(last_at) AS at FROM key_usage_hourly WHERE account_id = $1 GROUP BY key_id", account_id
    )
    return {r["key_id"]: r["at"] for r in rows}
