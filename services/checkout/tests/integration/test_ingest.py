"""Webhook ingestion against a real PostgreSQL."""

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog
from tollgate_checkout.handlers import ingest_webhook

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
CATALOG = Catalog.load(DEFAULT_PLANS_PATH)


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("checkout")


def completed(event_id: str, session_id: str, plan: str = "starter") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": session_id,
                "mode": "payment",
                "payment_status": "paid",
                "customer": "cus_ingest",
                "customer_details": {"email": "a@example.com", "name": None},
                "metadata": {"plan": plan},
                "amount_total": 999,
                "currency": "usd",
            }
        },
    }


async def outbox(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM outbox")


class TestIngest:
    async def test_the_same_event_twice_is_processed_once(self, pool: asyncpg.Pool) -> None:
        event = completed(f"evt_{secrets.token_hex(6)}", f"cs_{secrets.token_hex(6)}")
        assert await ingest_webhook(event, pool, CATALOG) == "published"
        assert await ingest_webhook(event, pool, CATALOG) == "duplicate"
        assert len(await outbox(pool)) == 1

    async def test_two_events_for_one_session_publish_one_fact(self, pool: asyncpg.Pool) -> None:
        session = f"cs_{secrets.token_hex(6)}"
        await ingest_webhook(completed(f"evt_{secrets.token_hex(6)}", session), pool, CATALOG)
        await ingest_webhook(completed(f"evt_{secrets.token_hex(6)}", session), pool, CATALOG)
        assert len(await outbox(pool)) == 1

    async def test_an_unknown_plan_is_recorded_but_publishes_nothing(self, pool: asyncpg.Pool) -> None:
        event = completed(f"evt_{secrets.token_hex(6)}", f"cs_{secrets.token_hex(6)}", plan="platinum")
        assert await ingest_webhook(event, pool, CATALOG) == "unprocessable"
        assert await outbox(pool) == []
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT outcome FROM stripe_events WHERE id = $1", event["id"]) == "unprocessable"
            )
