"""Signature handling and what each Stripe event means, without I/O."""

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog, Unprocessable, payment_fact
from tollgate_checkout.handlers import WebhookSecret, verify_webhook
from tollgate_shared.contracts import (
    InvoicePaid,
    InvoicePaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
)
from tollgate_shared.http import ApiError

SECRET = WebhookSecret("whsec_unit_test_secret", tolerance_s=300)
CATALOG = Catalog.load(DEFAULT_PLANS_PATH)


def signed(payload: bytes, secret: str = SECRET.secret, at: int | None = None) -> str:
    """Stripe's scheme, written out independently of the SDK under test."""
    t = int(time.time()) if at is None else at
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()


def completed(mode: str = "payment", plan: str = "professional", **session: Any) -> dict[str, Any]:
    obj = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "mode": mode,
        "payment_status": "paid",
        "customer": "cus_1",
        "customer_details": {"email": "a@example.com", "name": "Ada"},
        "metadata": {"plan": plan, "quantity": "1"},
        "amount_total": 2500,
        "currency": "usd",
        "payment_intent": "pi_1",
        "subscription": "sub_1" if mode == "subscription" else None,
    } | session
    return {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": obj}}


class TestVerifyWebhook:
    def test_accepts_a_correctly_signed_event(self) -> None:
        payload = json.dumps(completed()).encode()
        assert verify_webhook(payload, signed(payload), SECRET)["id"] == "evt_1"

    @pytest.mark.parametrize(
        ("header", "code"),
        [
            (None, "missing_signature"),
            ("", "missing_signature"),
            ("t=1,v1=deadbeef", "invalid_signature"),
            ("garbage", "invalid_signature"),
        ],
    )
    def test_refuses_missing_or_malformed_signatures(self, header: str | None, code: str) -> None:
        with pytest.raises(ApiError) as err:
            verify_webhook(b"{}", header, SECRET)
        assert (err.value.status, err.value.code) == (400, code)

    def test_refuses_a_signature_made_with_another_secret(self) -> None:
        payload = json.dumps(completed()).encode()
        with pytest.raises(ApiError, match="does not match"):
            verify_webhook(payload, signed(payload, secret="whsec_other"), SECRET)

    def test_refuses_a_tampered_payload(self) -> None:
        payload = json.dumps(completed()).encode()
        header = signed(payload)
        with pytest.raises(ApiError, match="does not match"):
            verify_webhook(payload.replace(b"2500", b"1"), header, SECRET)

    def test_refuses_an_old_timestamp(self) -> None:
        payload = json.dumps(completed()).encode()
        with pytest.raises(ApiError) as err:
            verify_webhook(payload, signed(payload, at=int(time.time()) - 3600), SECRET)
        assert err.value.code == "timestamp_outside_tolerance"

    def test_refuses_a_signed_payload_that_is_not_an_event(self) -> None:
        with pytest.raises(ApiError) as err:
            verify_webhook(b"[1, 2", signed(b"[1, 2"), SECRET)
        assert err.value.code == "malformed_payload"


class TestPaymentFact:
    def test_a_paid_pack_becomes_payment_succeeded_with_the_plans_credits(self) -> None:
        fact = payment_fact(completed(), CATALOG)
        assert isinstance(fact, PaymentSucceeded)
        assert (fact.account_id, fact.credits, fact.amount.amount_minor) == ("cus_1", 10_000, 2500)
        assert "api:rate:minute:100" in fact.features

    def test_quantity_multiplies_the_credits(self) -> None:
        fact = payment_fact(completed(metadata={"plan": "starter", "quantity": "3"}), CATALOG)
        assert isinstance(fact, PaymentSucceeded)
        assert fact.credits == 3_000

    def test_a_subscription_becomes_subscription_started(self) -> None:
        fact = payment_fact(completed(mode="subscription", plan="metered"), CATALOG)
        assert isinstance(fact, SubscriptionStarted)
        assert fact.subscription_id == "sub_1"

    def test_one_session_is_one_fact_whichever_event_reports_it(self) -> None:
        first = payment_fact(completed(), CATALOG)
        again = payment_fact(completed() | {"id": "evt_2", "type": "checkout.session.async_payment_succeeded"}, CATALOG)
        assert first is not None
        assert again is not None
        assert first.event_id == again.event_id

    def test_an_unpaid_session_waits_for_its_async_payment(self) -> None:
        assert payment_fact(completed(payment_status="unpaid"), CATALOG) is None

    def test_other_event_types_need_no_action(self) -> None:
        assert payment_fact({"id": "evt_3", "type": "customer.created", "data": {"object": {}}}, CATALOG) is None

    def test_an_unknown_plan_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable):
            payment_fact(completed(plan="platinum"), CATALOG)


def billing(kind: str, **obj: Any) -> dict[str, Any]:
    return {"id": f"evt_{kind}", "type": kind, "data": {"object": obj}}


class TestBillingFacts:
    def test_a_failed_subscription_invoice_is_invoice_payment_failed(self) -> None:
        fact = payment_fact(
            billing("invoice.payment_failed", id="in_1", customer="cus_1", subscription="sub_1", attempt_count=2),
            CATALOG,
        )
        assert isinstance(fact, InvoicePaymentFailed)
        assert (fact.account_id, fact.subscription_id, fact.attempt_count) == ("cus_1", "sub_1", 2)

    def test_newer_api_versions_nest_the_subscription(self) -> None:
        invoice = {"id": "in_2", "customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_9"}}}
        fact = payment_fact(billing("invoice.paid", **invoice), CATALOG)
        assert isinstance(fact, InvoicePaid) and fact.subscription_id == "sub_9"

    def test_a_one_off_invoice_needs_no_action(self) -> None:
        assert payment_fact(billing("invoice.payment_failed", id="in_3", customer="cus_1"), CATALOG) is None

    def test_a_deleted_subscription_ends(self) -> None:
        fact = payment_fact(billing("customer.subscription.deleted", id="sub_1", customer="cus_1"), CATALOG)
        assert isinstance(fact, SubscriptionEnded) and fact.subscription_id == "sub_1"

    def test_refunds_say_whether_they_were_full(self) -> None:
        charge = {"id": "ch_1", "customer": "cus_1", "payment_intent": "pi_1", "amount": 2500, "currency": "usd"}
        full = payment_fact(billing("charge.refunded", **charge, amount_refunded=2500, refunded=True), CATALOG)
        part = payment_fact(billing("charge.refunded", **charge, amount_refunded=500, refunded=False), CATALOG)
        assert isinstance(full, PaymentRefunded) and full.full
        assert isinstance(part, PaymentRefunded) and not part.full
        assert part.amount_refunded.amount_minor == 500
