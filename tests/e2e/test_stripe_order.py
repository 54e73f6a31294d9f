"""Stripe's events in the orders Stripe really delivers them, into the running stack: each
built from Stripe's published example object (served by stripe-mock, from Stripe's own
OpenAPI fixtures), given this test's ids, signed with the real scheme and posted to the
webhook. The books and the keys must end as if the events had come in Stripe's order."""

import json
import secrets
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tollgate_devstack.demo import Demo, eventually

from .helpers import post_webhook, rows, signed


async def example(stack: dict[str, Any], resource: str, **fields: Any) -> dict[str, Any]:
    """Stripe's published example of `resource`, with `fields` of this test's own."""
    async with httpx.AsyncClient(auth=("sk_test_123", "")) as http:
        r = await http.get(f"{stack['stripe_mock']}/v1/{resource}/{fields['id']}")
    assert r.status_code == 200, r.text
    return r.json() | fields  # type: ignore[no-any-return]


async def deliver(stack: dict[str, Any], kind: str, obj: dict[str, Any], created: int | None = None) -> str:
    """Sign and post one event; its outcome as checkout answered."""
    event = {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "api_version": "2025-03-31.basil",
        "data": {"object": obj},
    }
    r = await post_webhook(stack, *signed(stack, event))
    assert r.status_code == 200, r.text
    return str(r.json()["outcome"])


class Purchase:
    """A pack bought through checkout (so Stripe knows the customer), paid by events of ours."""

    def __init__(self, stack: dict[str, Any], demo: Demo) -> None:
        self.stack, self.demo = stack, demo
        self.email = f"order+{secrets.token_hex(4)}@example.com"

    async def session(
        self, plan: str = "starter", account: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        created = await self.demo.buy(plan, self.email, account_id=account, key=key)
        self.customer = created["customer"]
        price = {"starter": 999, "professional": 2500}[plan]
        return await example(
            self.stack,
            "checkout/sessions",
            id=created["id"],
            mode="payment",
            status="complete",
            payment_status="paid",
            customer=self.customer,
            customer_details={"email": self.email, "name": "Ada"},
            metadata={"plan": plan, "quantity": "1"},
            amount_total=price,
            currency="usd",
            payment_intent=f"pi_{created['id']}",
        )

    async def charge(self, session: dict[str, Any], refunded: int) -> dict[str, Any]:
        amount = session["amount_total"]
        return await example(
            self.stack,
            "charges",
            id=f"ch_{session['id']}",
            customer=self.customer,
            payment_intent=session["payment_intent"],
            amount=amount,
            amount_refunded=refunded,
            refunded=refunded >= amount,
            currency="usd",
        )

    async def key(self) -> str:
        key, _ = await self.demo.key_from_email(self.email)
        return key


async def answer(demo: Demo, key: str) -> str | None:
    return (await demo.validate(key, 1, consume=False)).get("reason")


async def becomes(demo: Demo, key: str, reason: str | None) -> None:
    await eventually(f"validate to say {reason}", lambda: answer(demo, key), until=lambda r: r == reason)


async def test_a_refund_delivered_before_its_purchase_takes_back_the_credits_and_the_key(
    stack: dict[str, Any], demo: Demo
) -> None:
    buyer = Purchase(stack, demo)
    session = await buyer.session()
    assert await deliver(stack, "charge.refunded", await buyer.charge(session, 999)) == "parked"
    assert await deliver(stack, "checkout.session.completed", session) == "published"
    key = await buyer.key()  # delivered as in Stripe's order: bought, then refunded
    await becomes(demo, key, "suspended")
    await demo.balance_equal(buyer.customer, 0)
    (prepaid,) = await rows(stack, "ledger", "SELECT credits_posted - debits_posted AS v FROM balances WHERE "
                            "account_id = $1", f"customer:{buyer.customer}:prepaid:USD/2")  # fmt: skip
    assert prepaid["v"] == 0  # the money went back, and is owed no more


async def test_after_a_top_up_a_full_refund_of_the_first_pack_leaves_the_key_working(
    stack: dict[str, Any], demo: Demo
) -> None:
    buyer = Purchase(stack, demo)
    first = await buyer.session()
    await deliver(stack, "checkout.session.completed", first)
    key = await buyer.key()
    second = await buyer.session(account=buyer.customer, key=key)
    await deliver(stack, "checkout.session.completed", second)
    await demo.balance_equal(buyer.customer, 2_000)
    await deliver(stack, "charge.refunded", await buyer.charge(first, 999))
    await demo.balance_equal(buyer.customer, 1_000)  # the second pack's credits remain...
    assert await answer(demo, key) is None  # ...and so does the key


async def test_an_older_failed_attempt_after_the_paid_invoice_changes_nothing(
    stack: dict[str, Any], demo: Demo
) -> None:
    email = f"order+{secrets.token_hex(4)}@example.com"
    created = await demo.buy("metered", email)
    sub = f"sub_{created['id']}"
    session = await example(
        stack,
        "checkout/sessions",
        id=created["id"],
        mode="subscription",
        status="complete",
        payment_status="paid",
        customer=created["customer"],
        customer_details={"email": email, "name": "Ada"},
        metadata={"plan": "metered"},
        subscription=sub,
    )
    await deliver(stack, "checkout.session.completed", session)
    key, _ = await demo.key_from_email(email)
    invoice = {"id": f"in_{created['id']}", "customer": created["customer"], "subscription": sub, "parent": None}
    now = int(time.time())
    paid = await example(stack, "invoices", **invoice, status="paid", attempt_count=2)
    failed = await example(stack, "invoices", **invoice, status="open", attempt_count=1)
    assert await deliver(stack, "invoice.paid", paid, created=now) == "published"
    assert await deliver(stack, "invoice.payment_failed", failed, created=now - 60) == "stale"
    assert await answer(demo, key) is None
    sent = await rows(stack, "notifier", "SELECT template FROM emails WHERE recipient = $1", email)
    assert [r["template"] for r in sent] == ["key_issued"]  # no "your payment failed" to a paying customer


async def test_a_subscription_deleted_before_its_checkout_completed_ends_the_key(
    stack: dict[str, Any], demo: Demo
) -> None:
    email = f"order+{secrets.token_hex(4)}@example.com"
    created = await demo.buy("metered", email)
    sub = f"sub_{created['id']}"
    deleted = await example(stack, "subscriptions", id=sub, customer=created["customer"], status="canceled")
    assert await deliver(stack, "customer.subscription.deleted", deleted) == "parked"
    session = await example(
        stack,
        "checkout/sessions",
        id=created["id"],
        mode="subscription",
        status="complete",
        payment_status="paid",
        customer=created["customer"],
        customer_details={"email": email, "name": "Ada"},
        metadata={"plan": "metered"},
        subscription=sub,
    )
    assert await deliver(stack, "checkout.session.completed", session) == "published"
    key, _ = await demo.key_from_email(email)
    await becomes(demo, key, "revoked")


class TestDisputes:
    async def dispute(self, stack: dict[str, Any], session: dict[str, Any], status: str) -> dict[str, Any]:
        return await example(
            stack,
            "disputes",
            id=f"dp_{session['id']}",
            charge=f"ch_{session['id']}",
            payment_intent=session["payment_intent"],
            amount=session["amount_total"],
            currency="usd",
            status=status,
        )

    async def hold(self, stack: dict[str, Any], session: dict[str, Any]) -> str | None:
        found = await rows(
            stack, "ledger", "SELECT state FROM pending_transfers WHERE id = $1", f"dispute:dp_{session['id']}"
        )
        return str(found[0]["state"]) if found else None

    async def test_a_lost_dispute_takes_the_credits_and_stops_the_key(self, stack: dict[str, Any], demo: Demo) -> None:
        buyer = Purchase(stack, demo)
        session = await buyer.session()
        await deliver(stack, "checkout.session.completed", session)
        key = await buyer.key()
        await deliver(stack, "charge.dispute.created", await self.dispute(stack, session, "needs_response"))
        await deliver(stack, "charge.dispute.closed", await self.dispute(stack, session, "lost"))
        await demo.balance_equal(buyer.customer, 0)
        await becomes(demo, key, "suspended")
        assert await eventually("the loss", lambda: self.hold(stack, session)) == "posted"

    async def test_an_inquiry_that_closes_releases_its_hold(self, stack: dict[str, Any], demo: Demo) -> None:
        buyer = Purchase(stack, demo)
        session = await buyer.session()
        await deliver(stack, "checkout.session.completed", session)
        key = await buyer.key()
        await deliver(stack, "charge.dispute.created", await self.dispute(stack, session, "warning_needs_response"))
        await eventually("the hold", lambda: self.hold(stack, session), until=lambda state: state == "pending")
        await deliver(stack, "charge.dispute.closed", await self.dispute(stack, session, "warning_closed"))
        await eventually("the release", lambda: self.hold(stack, session), until=lambda state: state == "voided")
        assert await answer(demo, key) is None
        assert (await demo.balance(buyer.customer) or {})["current"] == 1_000


class TestTheWebhookEdge:
    async def test_a_body_over_the_cap_is_413_even_when_signed(self, stack: dict[str, Any]) -> None:
        event = {"id": "evt_big", "type": "customer.updated", "data": {"object": {"id": "cus_x", "pad": "x" * 2**21}}}
        r = await post_webhook(stack, *signed(stack, event))
        assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    async def test_a_timestamp_beyond_the_tolerance_in_the_future_is_400(self, stack: dict[str, Any]) -> None:
        event = {"id": f"evt_{secrets.token_hex(6)}", "type": "customer.updated", "data": {"object": {"id": "c"}}}
        r = await post_webhook(stack, *signed(stack, event, at=int(time.time()) + 301))
        assert (r.status_code, r.json()["error"]["code"]) == (400, "timestamp_outside_tolerance")

    @pytest.mark.parametrize(
        ("kind", "obj"),
        [
            ("checkout.session.completed", None),
            ("charge.refunded", {"id": "ch_m", "payment_intent": "pi_m"}),
            ("invoice.paid", {"id": "in_m", "subscription": "sub_m"}),
            ("charge.dispute.created", {"id": "dp_m", "payment_intent": "pi_m"}),
            ("customer.subscription.deleted", {"id": "sub_m"}),
        ],
    )
    async def test_a_signed_but_malformed_event_is_400_and_counted(
        self, stack: dict[str, Any], kind: str, obj: dict[str, Any] | None
    ) -> None:
        def counted() -> float:
            for family in text_string_to_metric_families(httpx.get(f"{stack['checkout_admin']}/metrics").text):
                for sample in family.samples:
                    if sample.name == "tollgate_checkout_webhooks_total" and sample.labels == {
                        "type": kind,
                        "outcome": "malformed",
                    }:
                        return sample.value
            return 0.0

        before = counted()
        event = {"id": f"evt_{secrets.token_hex(6)}", "type": kind, "data": {"object": obj}}
        r = await post_webhook(stack, *signed(stack, event))
        assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_event"), r.text
        assert counted() == before + 1
        assert json.dumps(event["id"]) not in str(await rows(stack, "checkout", "SELECT id FROM stripe_events"))
