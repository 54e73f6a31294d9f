"""Aggregation and reporting against real PostgreSQL and the Stripe emulator (via stripe-mock)."""

import asyncio
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import stripe
from prometheus_client import REGISTRY

from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_shared.contracts import UsageRecorded, parse_usage
from tollgate_usage_sync import repo
from tollgate_usage_sync.domain import DEFAULT_METERS_PATH, Meter, Windows, load_meters
from tollgate_usage_sync.handlers import aggregate_batch
from tollgate_usage_sync.ratelimit import TokenBucket
from tollgate_usage_sync.reporter import Reporter

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
METERS = load_meters(DEFAULT_METERS_PATH)
HOUR = Windows(timedelta(hours=1), grace_seconds=0)
# The aggregator still accepts last hour's usage; the reporter (grace 0) may close it.
ACCEPTING = Windows(timedelta(hours=1), grace_seconds=3 * 3600)


def this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


# The start of last hour, not "an hour ago": records a few seconds apart must share a window
# even when the suite starts just before the hour turns.
LAST_HOUR = this_hour() - timedelta(hours=1)


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("usage-sync")


@pytest.fixture
def reporter(pool: asyncpg.Pool, stack: dict[str, Any]) -> Reporter:
    client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": stack["stripe"]}, max_network_retries=0)
    return Reporter(pool, client, METERS, HOUR, TokenBucket(100, 100))


def usage(account: str, units: int, at: datetime, billing: str = "metered", **kw: Any) -> UsageRecorded:
    return UsageRecorded(
        key_id=kw.pop("key_id", uuid4()),
        account_id=account,
        plan="metered",
        billing=billing,
        units=units,
        occurred_at=at,
        **kw,
    )  # type: ignore[arg-type]


async def aggregate(
    pool: asyncpg.Pool, usages: list[UsageRecorded], meters: list[Meter] = METERS, windows: Windows = ACCEPTING
) -> int:
    intake = [parse_usage(u.model_dump_json()) for u in usages]
    async with pool.acquire() as conn, conn.transaction():
        return await aggregate_batch(conn, intake, meters, windows)


async def windows_of(pool: asyncpg.Pool, account: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM usage_windows WHERE account_id = $1 ORDER BY meter, window_start", account
        )


async def sent_to_stripe(stack: dict[str, Any], account: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['stripe']}/_emulator/meter_events")
    return [e for e in r.json()["requests"] if e["payload"]["stripe_customer_id"] == account]


async def inject(stack: dict[str, Any], account: str, statuses: list[int]) -> None:
    await fault(stack, account, statuses=statuses)


async def slow_down(stack: dict[str, Any], account: str, delay_ms: int) -> None:
    """Every meter event call for `account` takes `delay_ms` to answer, as real Stripe's take time."""
    await fault(stack, account, delay_ms=delay_ms)


async def fault(stack: dict[str, Any], account: str, **spec: Any) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{stack['stripe']}/_emulator/faults",
            json={"path": "/v1/billing/meter_events", "match": account, **spec},
        )


async def calls_to_stripe(stack: dict[str, Any], accounts: list[str]) -> list[dict[str, Any]]:
    """Each meter event call for these accounts: customer, status, when it came and was answered."""
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['stripe']}/_emulator/meter_events")
    return [c for c in r.json()["calls"] if c["customer"] in accounts]


def overlap(x: dict[str, Any], y: dict[str, Any]) -> bool:
    return bool(x["received_at"] < y["answered_at"] and y["received_at"] < x["answered_at"])


def an_account() -> str:
    return f"cus_{secrets.token_hex(5)}"


class TestAggregate:
    async def test_sums_a_batch_per_customer_window(self, pool: asyncpg.Pool) -> None:
        a, b = an_account(), an_account()
        assert await aggregate(pool, [usage(a, 5, LAST_HOUR), usage(a, 7, LAST_HOUR), usage(b, 1, LAST_HOUR)]) == 3
        assert [w["value"] for w in await windows_of(pool, a)] == [12]
        assert [w["value"] for w in await windows_of(pool, b)] == [1]

    async def test_a_batch_spanning_windows_in_any_order_counts_each_in_its_own(self, pool: asyncpg.Pool) -> None:
        a = an_account()
        two_hours_ago = this_hour() - timedelta(hours=2)
        last_hour = two_hours_ago + timedelta(hours=1)
        at_the_edge = last_hour - timedelta(microseconds=1)  # still the earlier window
        in_berlin = last_hour.astimezone(timezone(timedelta(hours=1)))  # same instant, another offset
        meters = [
            *METERS,
            Meter("calls", "tg_calls", "count", {"billing": "metered"}),
            Meter("searches", "tg_searches", "sum", {"route": "/v1/search*", "status_class": "2xx"}),
        ]
        batch = [
            usage(a, 1, last_hour, route="/v1/search", status=200),
            usage(a, 2, two_hours_ago, route="/v1/search", status=500),
            usage(a, 4, in_berlin, route="/v1/things", status=200),
            usage(a, 8, at_the_edge, route="/v1/search/deep", status=201),
            usage(a, 16, last_hour + timedelta(minutes=59), route="/v1/search", status=204),
        ]
        assert await aggregate(pool, batch, meters) == 5
        got = {(w["meter"], w["window_start"]): w["value"] for w in await windows_of(pool, a)}
        assert got == {
            ("api_calls", two_hours_ago): 2 + 8,
            ("api_calls", last_hour): 1 + 4 + 16,
            ("calls", two_hours_ago): 2,
            ("calls", last_hour): 3,
            ("searches", two_hours_ago): 8,
            ("searches", last_hour): 1 + 16,
        }

    async def test_a_republished_record_counts_once(self, pool: asyncpg.Pool) -> None:
        a, key = an_account(), uuid4()
        record = usage(a, 5, LAST_HOUR, key_id=key, key_units_total=5)
        await aggregate(pool, [record])
        assert await aggregate(pool, [record]) == 0
        assert [w["value"] for w in await windows_of(pool, a)] == [5]

    async def test_prepaid_usage_is_not_metered(self, pool: asyncpg.Pool) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, 5, LAST_HOUR, billing="prepaid")])
        assert await windows_of(pool, a) == []

    async def test_unique_meters_count_members_once_per_window(self, pool: asyncpg.Pool) -> None:
        a, k1, k2 = an_account(), uuid4(), uuid4()
        meters = [Meter("active_keys", "tg_active_keys", "unique_keys", {"billing": "metered"})]
        await aggregate(pool, [usage(a, 1, LAST_HOUR, key_id=k) for k in (k1, k2, k1)], meters)
        await aggregate(pool, [usage(a, 1, LAST_HOUR, key_id=k1)], meters)
        assert [w["value"] for w in await windows_of(pool, a)] == [2]

    async def test_late_usage_is_counted_in_the_open_window_not_dropped(
        self, pool: asyncpg.Pool, reporter: Reporter
    ) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, 5, LAST_HOUR)])
        await reporter.tick()  # last hour's window is reported and closed
        await aggregate(pool, [usage(a, 3, LAST_HOUR)])  # arrives after its window closed
        windows = await windows_of(pool, a)
        assert [(w["value"], w["state"]) for w in windows] == [(5, "confirmed"), (3, "open")]
        assert windows[1]["window_start"] > windows[0]["window_start"]

    async def test_usage_past_its_window_and_grace_goes_to_the_open_window(self, pool: asyncpg.Pool) -> None:
        a = an_account()
        before = this_hour()
        await aggregate(pool, [usage(a, 4, LAST_HOUR - timedelta(hours=1))], windows=HOUR)
        (window,) = await windows_of(pool, a)
        assert window["value"] == 4
        assert before <= window["window_start"] <= this_hour()  # the hour may turn meanwhile


def reports_counted() -> Counter[str]:
    """usage-sync's api_calls reports on /metrics, by result."""
    counted = {
        r: REGISTRY.get_sample_value("tollgate_usage_sync_reports_total", {"meter": "api_calls", "result": r})
        for r in ("confirmed", "retrying", "failed")
    }
    return Counter({result: value or 0 for result, value in counted.items()})


class TestReport:
    async def test_one_meter_event_per_customer_window_with_the_sum(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, u, LAST_HOUR) for u in (5, 7, 30)])
        assert await reporter.tick() == 1
        assert await reporter.tick() == 0  # nothing is reported twice
        (sent,) = await sent_to_stripe(stack, a)
        assert sent["payload"]["value"] == "42" and sent["identifier"].startswith(f"tg-api_calls-{a}-")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT state FROM usage_windows WHERE account_id = $1", a) == "confirmed"
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'usage.reported'") == 1

    async def test_stripe_calls_per_hour_equal_customer_meter_pairs_with_usage(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        accounts = [an_account() for _ in range(4)]
        await aggregate(pool, [usage(a, 1, LAST_HOUR + timedelta(seconds=s)) for a in accounts for s in range(25)])
        await reporter.tick()
        await reporter.tick()
        assert [len(await sent_to_stripe(stack, a)) for a in accounts] == [1, 1, 1, 1]

    async def test_an_open_window_is_not_reported(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, 5, datetime.now(UTC))])
        assert await reporter.tick() == 0
        assert await sent_to_stripe(stack, a) == []

    async def test_a_stripe_5xx_is_retried_later_with_the_same_identifier(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, 3, LAST_HOUR)])
        await inject(stack, a, [503])
        before = reports_counted()
        assert await reporter.tick() == 0
        assert reports_counted() - before == Counter({"retrying": 1})
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, attempts, error FROM usage_windows WHERE account_id = $1", a)
            assert (row["state"], row["attempts"]) == ("sent", 1) and "injected" in row["error"]
            await conn.execute("UPDATE usage_windows SET next_attempt_at = now()")
        assert await reporter.tick() == 1
        assert [e["payload"]["value"] for e in await sent_to_stripe(stack, a)] == ["3"]
        assert reports_counted() - before == Counter({"retrying": 1, "confirmed": 1})

    async def test_a_stripe_4xx_fails_the_report_with_its_reason(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a = an_account()
        await aggregate(pool, [usage(a, 3, LAST_HOUR)])
        await inject(stack, a, [400])
        before = reports_counted()
        await reporter.tick()
        (window,) = await windows_of(pool, a)
        assert window["state"] == "failed" and "HTTP 400" in window["error"]
        assert reports_counted() - before == Counter({"failed": 1})


class TestConcurrency:
    async def test_stripe_refuses_a_second_call_for_one_customer_and_meter_in_flight(
        self, stack: dict[str, Any]
    ) -> None:
        a = an_account()
        await slow_down(stack, a, 300)
        client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": stack["stripe"]}, max_network_retries=0)

        async def send(identifier: str) -> int:
            try:
                await client.v1.billing.meter_events.create_async(
                    {
                        "event_name": "tollgate_api_calls",
                        "identifier": identifier,
                        "payload": {"stripe_customer_id": a, "value": "1"},
                    }
                )
            except stripe.StripeError as exc:
                return exc.http_status or 0
            return 200

        assert sorted(await asyncio.gather(send(f"{a}-1"), send(f"{a}-2"))) == [200, 429]

    async def test_customers_are_reported_side_by_side_and_each_ones_windows_in_turn(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a, b, c = an_account(), an_account(), an_account()
        await aggregate(pool, [usage(a, 1, LAST_HOUR - timedelta(hours=1)), usage(a, 2, LAST_HOUR)])
        await aggregate(pool, [usage(b, 3, LAST_HOUR), usage(c, 4, LAST_HOUR)])
        for account in (a, b, c):
            await slow_down(stack, account, 300)
        before = reports_counted()
        assert await reporter.tick() == 4
        assert reports_counted() - before == Counter({"confirmed": 4})  # no 429 to retry
        calls = await calls_to_stripe(stack, [a, b, c])
        assert [call["status"] for call in calls] == [200] * 4
        a_first, a_second = (call for call in calls if call["customer"] == a)
        assert not overlap(a_first, a_second)
        others = [call for call in calls if call["customer"] != a]
        assert all(overlap(a_first, other) for other in others)


class TestBackfill:
    async def test_backfill_resends_only_what_stripe_refused_and_only_for_that_customer(
        self, pool: asyncpg.Pool, reporter: Reporter, stack: dict[str, Any]
    ) -> None:
        a, b, c = an_account(), an_account(), an_account()
        await inject(stack, a, [400])
        await inject(stack, c, [400])
        await aggregate(pool, [usage(a, 3, LAST_HOUR), usage(b, 4, LAST_HOUR), usage(c, 5, LAST_HOUR)])
        assert await reporter.tick() == 1  # b confirmed; a and c refused
        async with pool.acquire() as conn:
            assert await repo.reopen_for_backfill(conn, LAST_HOUR, LAST_HOUR + timedelta(hours=1), a) == 1
            assert await repo.reopen_for_backfill(conn, LAST_HOUR, LAST_HOUR + timedelta(hours=1), b) == 0
        assert await reporter.tick() == 1
        assert [len(await sent_to_stripe(stack, x)) for x in (a, b, c)] == [1, 1, 0]  # c waits for its own
