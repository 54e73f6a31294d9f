"""Kafka goes away: what needs only PostgreSQL goes on. Keys keep validating (and
counting), checkout keeps taking Stripe's webhooks, both stay ready, and a keys pod
started during the outage becomes ready too; the outbox holds what waits. When the
broker is back, every event arrives exactly once and the money path catches up."""

import asyncio
import secrets
import sys
from typing import Any

import httpx

from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.processes import free_port
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS, USAGE_RECORDED
from tollgate_shared.kafka_reader import read_topic

CALLS_DURING_OUTAGE = 25


async def ready(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await http.get(f"{url}/readyz")
    assert r.status_code == 200, f"{url} not ready during the outage: {r.text}"
    return r.json()  # type: ignore[no-any-return]


async def test_validate_and_webhooks_go_on_without_kafka_and_every_event_arrives_once(
    stack: dict[str, Any], demo: Demo
) -> None:
    launcher = stack["launcher"]
    first = f"outage+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", first)
    await demo.pay(session["id"])
    key, _ = await demo.key_from_email(first)
    await demo.balance_equal(session["customer"], 1_000)
    second_email = f"outage+{secrets.token_hex(4)}@example.com"
    second = await demo.buy("starter", second_email)
    late_pod = free_port()

    await asyncio.to_thread(launcher.procs.stop, "kafka")
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            for _ in range(CALLS_DURING_OUTAGE):
                v = await demo.validate(key, 1)
                assert v["isValid"], v
            assert v["quota"]["used"] == CALLS_DURING_OUTAGE
            await demo.pay(second["id"])  # Stripe's webhook, answered 200 by checkout
            for service in ("keys", "checkout"):
                assert (await ready(http, stack[service]))["reported"] == {"kafka": False}

            # A pod started now (a rollout, a reschedule) comes up ready as well.
            env = launcher.env_for("keys", stack["database_url"], stack["kafka"]) | {
                "KEYS_HTTP_PORT": str(late_pod),
                "KEYS_ADMIN_PORT": str(free_port()),
                "KEYS_CONSUMERS_ENABLED": "false",
            }
            launcher.procs.start("keys-during-outage", [sys.executable, "-m", "tollgate_keys"], env)
            await eventually(
                "a keys pod started during the outage to be ready",
                lambda: _ready_or_none(http, f"http://127.0.0.1:{late_pod}"),
                timeout=60,
            )
            assert (await demo.validate(key, 1, consume=False))["isValid"]
    finally:
        await asyncio.to_thread(launcher.up_data)  # the broker, on the same data

    # The money path catches up: the second purchase is credited, the calls are burned.
    await demo.balance_equal(second["customer"], 1_000)
    await demo.balance_equal(session["customer"], 1_000 - CALLS_DURING_OUTAGE)
    await demo.key_from_email(second_email)
    async with httpx.AsyncClient(timeout=15) as http:
        await eventually(
            "the late pod to find Kafka",
            lambda: _kafka_back(http, f"http://127.0.0.1:{late_pod}"),
            timeout=60,
        )
    launcher.procs.stop("keys-during-outage")

    payments = await read_topic(stack["kafka"], PAYMENTS_EVENTS.name)
    paid = [p for p in payments if p.get("checkout_session_id") == second["id"]]
    assert [p["event_type"] for p in paid] == ["PaymentSucceeded"]
    usage = await read_topic(stack["kafka"], USAGE_RECORDED.name)
    mine = [u for u in usage if u.get("account_id") == session["customer"]]
    assert len(mine) == CALLS_DURING_OUTAGE
    assert len({u["event_id"] for u in mine}) == CALLS_DURING_OUTAGE


async def _ready_or_none(http: httpx.AsyncClient, url: str) -> bool | None:
    r = await http.get(f"{url}/readyz")
    return True if r.status_code == 200 else None


async def _kafka_back(http: httpx.AsyncClient, url: str) -> bool | None:
    r = await http.get(f"{url}/readyz")
    return True if r.json()["reported"]["kafka"] else None
