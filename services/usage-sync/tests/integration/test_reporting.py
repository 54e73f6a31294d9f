"""Aggregation and reporting against real PostgreSQL and the Stripe emulator (via stripe-mock)."""

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import stripe

from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_shared.contracts import UsageRecorded
from tollgate_usage_sync.domain import DEFAULT_METERS_PATH, load_meters
from tollgate_usage_sync.handlers import Reporter, Windows, aggregate_usage

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
METERS = load_meters(DEFAULT_METERS_PATH)
HOUR = Windows(timedelta(hours=1), grace_seconds=0)


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("usage-sync")


@pytest.fixture
def reporter(pool: asyncpg.Pool, stack: dict[str, Any]) -> Reporter:
    client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": stack["stripe"]}, max_network_retries=0)
    return Reporter(pool, client, METERS, HOUR)


def usage(account: str, units: int, at: datetime, billing: str = "metered") -> UsageRecorded:
    return UsageRecorded(
        key_id=uuid4(),
        account_id=account,
        plan="metered",
        billing=billing,  # type: ignore[arg-type]
        units=units,
        occurred_at=at,
    )


async def sent_to_stripe(stack: dict[str, Any], account: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['stripe']}/_emulator/meter_events")
    return [e for e in r.json()["requests"] if e["payload"]["stripe_customer_id"] == account]


async def inject(stack: dict[str, Any], account: str, statuses: list[int]) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{stack['stripe']}/_emulator/faults",
            json={"path": "/v1/billing/meter_events", "match": account, "statuses": statuses},
        )


LAST_HOUR = datetime.now(UTC) - timedelta(hours=1)


class TestAggregate:
    async def test_a_redelivered_record_counts_once(self, pool: asyncpg.Pool) -> None:
        event = usage("cus_agg", 5, LAST_HOUR)
        assert await aggregate_usage(event, pool, METERS, HOUR) is True
        assert await aggregate_usage(event, pool, METERS, HOUR) is False
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT value FROM usage_windows") == 5

    async def test_prepaid_usage_is_not_metered(self, pool: asyncpg.Pool) -> None:
        assert await aggregate_usage(usage("cus_pp", 5, LAST_HOUR, "prepaid"), pool, METERS, HOUR) is False


class TestReport:
    async def test_one_meter_event_per_customer_window_with_the_sum(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        account = f"cus_{secrets.token_hex(5)}"
        for units in (5, 7, 30):
            await aggregate_usage(usage(account, units, LAST_HOUR), pool, METERS, HOUR)
        assert await reporter.tick() == 1
        assert await reporter.tick() == 0  # nothing is reported twice
        (sent,) = await sent_to_stripe(stack, account)
        assert sent["payload"]["value"] == "42"
        assert sent["identifier"].startswith(f"tg-api_calls-{account}-")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT state FROM usage_windows") == "confirmed"
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'usage.reported'") == 1

    async def test_an_open_window_is_not_reported(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        account = f"cus_{secrets.token_hex(5)}"
        await aggregate_usage(usage(account, 5, datetime.now(UTC)), pool, METERS, HOUR)
        assert await reporter.tick() == 0
        assert await sent_to_stripe(stack, account) == []

    async def test_a_stripe_5xx_is_retried_later_with_the_same_identifier(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        account = f"cus_{secrets.token_hex(5)}"
        await aggregate_usage(usage(account, 3, LAST_HOUR), pool, METERS, HOUR)
        await inject(stack, account, [503])
        assert await reporter.tick() == 0
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, attempts, error FROM usage_windows")
            assert (row["state"], row["attempts"]) == ("sent", 1)
            assert "injected" in row["error"]
            await conn.execute("UPDATE usage_windows SET next_attempt_at = now()")
        assert await reporter.tick() == 1
        assert [e["payload"]["value"] for e in await sent_to_stripe(stack, account)] == ["3"]

    async def test_a_stripe_4xx_fails_the_report_with_its_reason(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        account = f"cus_{secrets.token_hex(5)}"
        await aggregate_usage(usage(account, 3, LAST_HOUR), pool, METERS, HOUR)
        await inject(stack, account, [400])
        await reporter.tick()
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, error FROM usage_windows")
        assert row["state"] == "failed"
        assert row["error"]
