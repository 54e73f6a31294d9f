"""Checkout's SQL: the Stripe events it accepted, where each Stripe object stands, and
the facts waiting for what they depend on."""

from typing import Any
from uuid import UUID

import asyncpg

from .machines import Known, Observation


async def record_event(conn: asyncpg.Connection, event: dict[str, Any], outcome: str) -> bool:
    """Store a Stripe event once; False if it was stored before (a redelivery)."""
    inserted = await conn.fetchval(
        "INSERT INTO stripe_events (id, type, outcome, payload) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (id) DO NOTHING RETURNING 1",
        event["id"],
        event["type"],
        outcome,
        event,
    )
    return inserted is not None


async def set_outcome(conn: asyncpg.Connection, event_id: str, outcome: str) -> None:
    await conn.execute("UPDATE stripe_events SET outcome = $2 WHERE id = $1", event_id, outcome)


async def stored_events(conn: asyncpg.Connection, event_id: str | None, since: Any, outcome: str) -> list[Any]:
    """Stored events with `outcome`: one by id, or every one received since a moment."""
    rows = await conn.fetch(
        "SELECT payload FROM stripe_events WHERE outcome = $3 AND ($1::text IS NULL OR id = $1) "
        "AND ($2::timestamptz IS NULL OR received_at >= $2) ORDER BY received_at, id",
        event_id,
        since,
        outcome,
    )
    return [r["payload"] for r in rows]


async def lock(conn: asyncpg.Connection, name: str) -> None:
    """Serialise every transaction that touches `name` (an object or a dependency)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)


async def known(conn: asyncpg.Connection, object_id: str) -> Known | None:
    row = await conn.fetchrow(
        "SELECT state, rank, progress, stripe_created FROM stripe_objects WHERE id = $1", object_id
    )
    return Known(row["state"], row["rank"], row["progress"], row["stripe_created"]) if row else None


async def move(conn: asyncpg.Connection, seen: Observation) -> None:
    await conn.execute(
        "INSERT INTO stripe_objects (id, kind, state, rank, progress, stripe_created, account_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, "
        "  rank = EXCLUDED.rank, progress = EXCLUDED.progress, stripe_created = EXCLUDED.stripe_created, "
        "  account_id = coalesce(EXCLUDED.account_id, stripe_objects.account_id), updated_at = now()",
        seen.object_id,
        seen.kind,
        seen.state,
        seen.rank,
        seen.progress,
        seen.created,
        seen.account_id,
    )


async def provider(conn: asyncpg.Connection, dependency: str) -> str | None:
    """Whose the dependency is, once it has been provided."""
    account: str | None = await conn.fetchval("SELECT account_id FROM provided WHERE dependency = $1", dependency)
    return account


async def provide(conn: asyncpg.Connection, dependency: str, account_id: str) -> None:
    await conn.execute(
        "INSERT INTO provided (dependency, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", dependency, account_id
    )


async def park(conn: asyncpg.Connection, dependency: str, event_id: UUID, payload: dict[str, Any], cause: str) -> None:
    await conn.execute(
        "INSERT INTO parked_facts (dependency, event_id, payload, stripe_event) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (event_id) DO NOTHING",
        dependency,
        event_id,
        payload,
        cause,
    )


async def unpark(conn: asyncpg.Connection, dependency: str) -> list[dict[str, Any]]:
    """The facts waiting for `dependency`, in the order they arrived, taken off the list."""
    rows = await conn.fetch("DELETE FROM parked_facts WHERE dependency = $1 RETURNING id, payload", dependency)
    return [r["payload"] for r in sorted(rows, key=lambda r: r["id"])]


async def parked_summary(conn: asyncpg.Connection) -> tuple[int, float]:
    """How many facts wait, and how long the oldest has waited (seconds)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(parked_at)), 0)::float8 AS oldest "
        "FROM parked_facts"
    )
    return int(row["n"]), float(row["oldest"])
