"""Webhook ingestion against a real PostgreSQL."""

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog
from tollgate_checkout.handlers import StripeSide, ingest_webhook, replay_unprocessable
from tollgate_checkout.stripe_gateway import StripeCheckout, make_client
from tollgate_devstack.stack import STRIPE_API_KEY

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
CATALOG = Catalog.load(DEFAULT_PLANS_PATH)


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("checkout")


@pytest.fixture
def stripe_side(stack: dict[str, Any]) -> StripeSide:
    client = make_client(STRIPE_API_KEY, stack["stripe"])
    return StripeSide(CATALOG, StripeCheckout(client, "http://ok", "http://cancel"))


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
    async def test_the_same_event_twice_is_processed_once(self, pool: asyncpg.Pool, stripe_side: StripeSide) -> None:
        event = completed(f"evt_{secrets.token_hex(6)}", f"cs_{secrets.token_hex(6)}")
        assert await ingest_webhook(event, pool, stripe_side) == "published"
        assert await ingest_webhook(event, pool, stripe_side) == "duplicate"
        assert len(await outbox(pool)) == 1

    async def test_two_events_for_one_session_publish_one_fact(
        self, pool: asyncpg.Pool, stripe_side: StripeSide
    ) -> None:
        session = f"cs_{secrets.token_hex(6)}"
        await ingest_webhook(completed(f"evt_{secrets.token_hex(6)}", session), pool, stripe_side)
        assert await ingest_webhook(completed(f"evt_{secrets.token_hex(6)}", session), pool, stripe_side) == "stale"
        assert len(await outbox(pool)) == 1

    async def test_an_unknown_plan_is_recorded_but_publishes_nothing(
        self, pool: asyncpg.Pool, stripe_side: StripeSide
    ) -> None:
        event = completed(f"evt_{secrets.token_hex(6)}", f"cs_{secrets.token_hex(6)}", plan="platinum")
        assert await ingest_webhook(event, pool, stripe_side) == "unprocessable"
        assert await outbox(pool) == []
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT outcome FROM stripe_events WHERE id = $1", event["id"]) == "unprocessable"
            )


def refunded(event_id: str, session_id: str, amount: int, created: int = 0) -> dict[str, Any]:
    charge = {
        "id": f"ch_{session_id}",
        "object": "charge",
        "customer": None,  # a guest charge: whose it is comes from the payment it refunds
        "payment_intent": f"pi_{session_id}",
        "amount": 999,
        "amount_refunded": amount,
        "refunded": amount >= 999,
        "currency": "usd",
    }
    return {"id": event_id, "type": "charge.refunded", "created": created, "data": {"object": charge}}


def paid(event_id: str, session_id: str) -> dict[str, Any]:
    event = completed(event_id, session_id)
    event["data"]["object"]["payment_intent"] = f"pi_{session_id}"
    return event


async def published(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """(event type, message key) of every outbox row, in publishing order."""
    return [(r["payload"]["event_type"], r["key"]) for r in await outbox(pool)]


def evt() -> str:
    return f"evt_{secrets.token_hex(6)}"


class TestOrder:
    async def test_a_refund_before_its_payment_waits_and_follows_it(
        self, pool: asyncpg.Pool, stripe_side: StripeSide
    ) -> None:
        session = f"cs_{secrets.token_hex(6)}"
        assert await ingest_webhook(refunded(evt(), session, 999), pool, stripe_side) == "parked"
        assert await published(pool) == []
        assert await ingest_webhook(paid(evt(), session), pool, stripe_side) == "published"
        # The refund goes out after the payment, on the paying customer's partition.
        assert await published(pool) == [("PaymentSucceeded", "cus_ingest"), ("PaymentRefunded", "cus_ingest")]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM parked_facts") == 0

    async def test_a_smaller_refund_total_after_a_larger_one_is_stale(
        self, pool: asyncpg.Pool, stripe_side: StripeSide
    ) -> None:
        session = f"cs_{secrets.token_hex(6)}"
        await ingest_webhook(paid(evt(), session), pool, stripe_side)
        assert await ingest_webhook(refunded(evt(), session, 999), pool, stripe_side) == "published"
        assert await ingest_webhook(refunded(evt(), session, 300), pool, stripe_side) == "stale"
        assert [t for t, _ in await published(pool)] == ["PaymentSucceeded", "PaymentRefunded"]

    async def test_what_the_events_cannot_order_is_asked_of_stripe(
        self, pool: asyncpg.Pool, stripe_side: StripeSide, stack: dict[str, Any]
    ) -> None:
        """Won and lost at the same second: Stripe's current dispute decides."""
        session = f"cs_{secrets.token_hex(6)}"
        await ingest_webhook(paid(evt(), session), pool, stripe_side)
        dispute = {"id": f"dp_{session}", "payment_intent": f"pi_{session}", "amount": 999, "currency": "usd"}
        async with httpx.AsyncClient() as http:
            await http.post(f"{stack['stripe']}/_emulator/objects", json=dispute | {"status": "lost"})

        def closed(status: str) -> dict[str, Any]:
            obj = dispute | {"status": status}
            return {"id": evt(), "type": "charge.dispute.closed", "created": 50, "data": {"object": obj}}

        assert await ingest_webhook(closed("won"), pool, stripe_side) == "published"
        assert await ingest_webhook(closed("lost"), pool, stripe_side) == "published"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT state FROM stripe_objects WHERE id = $1", dispute["id"]) == "lost"
        outcomes = [r["payload"].get("outcome") for r in await outbox(pool)]
        assert outcomes == [None, "won", "lost"]  # the purchase, then each close as a fact of its own

    async def test_an_unprocessable_event_is_applied_again_once_its_cause_is_fixed(
        self, pool: asyncpg.Pool, stripe_side: StripeSide, tmp_path: Any
    ) -> None:
        session = f"cs_{secrets.token_hex(6)}"
        event = completed(evt(), session, plan="platinum")
        assert await ingest_webhook(event, pool, stripe_side) == "unprocessable"
        plans = json.loads(DEFAULT_PLANS_PATH.read_text())
        plans["plans"]["platinum"] = plans["plans"]["starter"] | {"product_name": "Platinum"}
        (tmp_path / "plans.json").write_text(json.dumps(plans))
        fixed = StripeSide(Catalog.load(tmp_path / "plans.json"), stripe_side.gateway)
        assert await replay_unprocessable(pool, fixed, event["id"], None) == [(event["id"], "published")]
        assert [t for t, _ in await published(pool)] == ["PaymentSucceeded"]
        assert await replay_unprocessable(pool, fixed, event["id"], None) == []  # nothing left to replay
