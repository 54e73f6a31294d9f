"""Metered usage for customers and finance: the usage endpoint, reconciliation, backfill."""

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from pydantic import SecretStr

from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_usage_sync.cli import run
from tollgate_usage_sync.config import Settings


async def a_reported_metered_customer(stack: dict[str, Any]) -> tuple[str, str]:
    """A metered customer whose 12 calls Stripe has, and one of their keys."""
    async with Demo(stack) as demo:
        email = f"meter+{int(datetime.now(UTC).timestamp() * 1000)}@example.com"
        session = await demo.buy("metered", email)
        await demo.pay(session["id"])
        key, _ = await demo.key_from_email(email)
        for units in (5, 7):
            assert (await demo.validate(key, units))["isValid"]
        await eventually("the report", lambda: reported(stack, session["customer"], 12), timeout=60)
        return str(session["customer"]), key


async def reported(stack: dict[str, Any], customer: str, total: int) -> bool | None:
    mine = await meter_events(stack, customer)
    return True if sum(int(e["payload"]["value"]) for e in mine) == total else None


async def meter_events(stack: dict[str, Any], customer: str, kind: str = "events") -> list[dict[str, Any]]:
    """The customer's meter events as the emulator keeps them (`events`, one per identifier,
    as Stripe bills) or every request it received (`requests`, duplicates included)."""
    async with httpx.AsyncClient() as http:
        r = (await http.get(f"{stack['stripe']}/_emulator/meter_events")).json()
    return [e for e in r[kind] if e["payload"]["stripe_customer_id"] == customer]


def settings(stack: dict[str, Any]) -> Settings:
    return Settings(
        database_url=stack["database_url"],
        kafka_bootstrap_servers=stack["kafka"],
        stripe_api_key=SecretStr(STRIPE_API_KEY),
        stripe_api_base=stack["stripe"],
        ledger_url=stack["ledger_admin"],
        ledger_token=SecretStr(stack["operator_token"]),
        keys_token=SecretStr(stack["portal_token"]),
    )


def this_hour() -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return start - timedelta(hours=1), start + timedelta(hours=1)


async def reconcile(stack: dict[str, Any], customer: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    start, end = this_hour()
    args = argparse.Namespace(command="reconcile", start=start, end=end, ledger_url=None, customer=customer)
    code = await run(args, settings(stack))
    return code, capsys.readouterr().out


class TestUsageEndpoint:
    async def test_the_customer_sees_this_periods_usage_and_the_upcoming_invoice(self, stack: dict[str, Any]) -> None:
        customer, key = await a_reported_metered_customer(stack)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
            body = (await http.get(f"{stack['usage_sync']}/v1/usage/{customer}")).json()
            theirs = await http.get(f"{stack['usage_sync']}/v1/usage/cus_somebodyelse")
        assert [(m["meter"], m["value"]) for m in body["meters"]] == [("api_calls", 12)]
        assert body["upcomingInvoice"]["amountDue"] == 12  # one cent a unit in the emulator
        assert body["upcomingInvoice"]["lines"][0]["quantity"] == 12
        assert theirs.status_code == 403

    async def test_an_operator_sees_a_customer_without_usage_has_none_and_no_invoice(
        self, stack: dict[str, Any]
    ) -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {stack['operator_token']}"}) as http:
            body = (await http.get(f"{stack['usage_sync_admin']}/v1/usage/cus_nobody")).json()
        assert body["meters"] == [] and body["upcomingInvoice"] is None


class TestReconcile:
    async def test_a_healthy_customer_has_no_differences(
        self, stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        customer, _ = await a_reported_metered_customer(stack)
        code, out = await reconcile(stack, customer, capsys)
        assert code == 0, out
        assert "0 difference(s)" in out

    async def test_usage_at_stripe_that_we_did_not_report_is_a_difference(
        self, stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        customer, _ = await a_reported_metered_customer(stack)
        client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": stack["stripe"]})
        await client.v1.billing.meter_events.create_async(
            {  # made on purpose, outside Tollgate
                "event_name": "tollgate_api_calls",
                "identifier": f"manual-{customer}",
                "payload": {"stripe_customer_id": customer, "value": "3"},
            }
        )
        code, out = await reconcile(stack, customer, capsys)
        assert code == 1
        assert f"{customer}\tapi_calls: usage-sync aggregated vs Stripe\texpected 12\tgot 15" in out

    async def test_prepaid_usage_agrees_between_keys_and_the_ledger(
        self, stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with Demo(stack) as demo:
            email = f"pp+{int(datetime.now(UTC).timestamp() * 1000)}@example.com"
            session = await demo.buy("starter", email)
            await demo.pay(session["id"])
            key, _ = await demo.key_from_email(email)
            await demo.validate(key, 40)
            await demo.balance_equal(session["customer"], 960)
        code, out = await reconcile(stack, session["customer"], capsys)
        assert code == 0, out


class TestBackfill:
    async def test_a_confirmed_period_is_not_sent_again(
        self, stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Stripe keeps an identifier for at least a day, not forever: a confirmed window
        sent again could be billed twice, so backfill leaves it alone."""
        customer, _ = await a_reported_metered_customer(stack)
        before = len(await meter_events(stack, customer, "requests"))
        start, end = this_hour()
        args = argparse.Namespace(command="backfill", start=start, end=end, customer=customer)
        assert await run(args, settings(stack)) == 0
        assert "backfill: 0 windows queued" in capsys.readouterr().out
        assert len(await meter_events(stack, customer, "requests")) == before
        assert await reported(stack, customer, 12)
