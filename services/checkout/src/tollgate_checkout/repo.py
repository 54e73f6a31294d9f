"""Checkout's SQL: the Stripe events it has accepted."""

from typing import Any

import asyncpg


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
