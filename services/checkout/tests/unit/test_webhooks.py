"""Signature handling and what each Stripe event means, without I/O."""

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog, Malformed, Unprocessable
from tollgate_checkout.handlers import WebhookSecrets, verify_webhook
from tollgate_checkout.machines import Known, decide, facts, observe
from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    Event,
    InvoicePaid,
    InvoicePaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
)
from tollgate_shared.http import ApiError

SECRET = WebhookSecrets(("whsec_unit_test_secret",), tolerance_s=300)
CATALOG = Catalog.load(DEFAULT_PLANS_PATH)


def payment_fact(event: dict[str, Any]) -> Event | None:
    """The fact an event stands for about an object seen for the first time."""
    seen = observe(event)
    if seen is None:
        return None
    out = facts(None, seen, CATALOG, event["id"])
    return out[0] if out else None


def signed(payload: bytes, secret: str = SECRET.secrets[0], at: int | None = None) -> str:
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

    def test_refuses_a_timestamp_from_the_future(self) -> None:
        payload = json.dumps(completed()).encode()
        with pytest.raises(ApiError) as err:
            verify_webhook(payload, signed(payload, at=int(time.time()) + 301), SECRET)
        assert err.value.code == "timestamp_outside_tolerance"

    def test_refuses_a_signed_payload_that_is_not_an_event(self) -> None:
        with pytest.raises(ApiError) as err:
            verify_webhook(b"[1, 2", signed(b"[1, 2"), SECRET)
        assert err.value.code == "malformed_payload"

    def test_during_a_rotation_either_secret_is_stripes(self) -> None:
        rotating = WebhookSecrets(("whsec_new_secret", "whsec_old_secret"), tolerance_s=300)
        payload = json.dumps(completed()).encode()
        for secret in rotating.secrets:
            assert verify_webhook(payload, signed(payload, secret=secret), rotating)["id"] == "evt_1"
        with pytest.raises(ApiError, match="does not match"):
            verify_webhook(payload, signed(payload, secret="whsec_third_secret"), rotating)


class TestPaymentFact:
    def test_a_paid_pack_becomes_payment_succeeded_with_the_plans_credits(self) -> None:
        fact = payment_fact(completed())
        assert isinstance(fact, PaymentSucceeded)
        assert (fact.account_id, fact.credits, fact.amount.amount_minor) == ("cus_1", 10_000, 2500)
        assert "api:rate:minute:100" in fact.features

    def test_quantity_multiplies_the_credits(self) -> None:
        fact = payment_fact(completed(metadata={"plan": "starter", "quantity": "3"}))
        assert isinstance(fact, PaymentSucceeded)
        assert fact.credits == 3_000

    def test_a_subscription_becomes_subscription_started(self) -> None:
        fact = payment_fact(completed(mode="subscription", plan="metered"))
        assert isinstance(fact, SubscriptionStarted)
        assert fact.subscription_id == "sub_1"

    def test_one_session_is_one_fact_whichever_event_reports_it(self) -> None:
        first = payment_fact(completed())
        again = payment_fact(completed() | {"id": "evt_2", "type": "checkout.session.async_payment_succeeded"})
        assert first is not None
        assert again is not None
        assert first.event_id == again.event_id

    def test_an_unpaid_session_waits_for_its_async_payment(self) -> None:
        assert payment_fact(completed(payment_status="unpaid")) is None

    def test_other_event_types_need_no_action(self) -> None:
        assert payment_fact({"id": "evt_3", "type": "customer.created", "data": {"object": {}}}) is None

    def test_an_unknown_plan_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable):
            payment_fact(completed(plan="platinum"))


def billing(kind: str, **obj: Any) -> dict[str, Any]:
    return {"id": f"evt_{kind}", "type": kind, "data": {"object": obj}}


class TestBillingFacts:
    def test_a_failed_subscription_invoice_is_invoice_payment_failed(self) -> None:
        fact = payment_fact(
            billing("invoice.payment_failed", id="in_1", customer="cus_1", subscription="sub_1", attempt_count=2)
        )
        assert isinstance(fact, InvoicePaymentFailed)
        assert (fact.account_id, fact.subscription_id, fact.attempt_count) == ("cus_1", "sub_1", 2)

    def test_newer_api_versions_nest_the_subscription(self) -> None:
        invoice = {"id": "in_2", "customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_9"}}}
        fact = payment_fact(billing("invoice.paid", **invoice))
        assert isinstance(fact, InvoicePaid) and fact.subscription_id == "sub_9"

    def test_a_one_off_invoice_needs_no_action(self) -> None:
        assert payment_fact(billing("invoice.payment_failed", id="in_3", customer="cus_1")) is None

    def test_a_deleted_subscription_ends(self) -> None:
        fact = payment_fact(billing("customer.subscription.deleted", id="sub_1", customer="cus_1"))
        assert isinstance(fact, SubscriptionEnded) and fact.subscription_id == "sub_1"

    def test_refunds_say_whether_they_were_full(self) -> None:
        charge = {"id": "ch_1", "customer": "cus_1", "payment_intent": "pi_1", "amount": 2500, "currency": "usd"}
        full = payment_fact(billing("charge.refunded", **charge, amount_refunded=2500, refunded=True))
        part = payment_fact(billing("charge.refunded", **charge, amount_refunded=500, refunded=False))
        assert isinstance(full, PaymentRefunded) and full.full
        assert isinstance(part, PaymentRefunded) and not part.full
        assert part.amount_refunded.amount_minor == 500


def dispute(status: str, created: int = 100) -> dict[str, Any]:
    obj = {"id": "dp_1", "payment_intent": "pi_1", "amount": 2500, "currency": "usd", "status": status}
    return {"id": f"evt_{status}", "type": "charge.dispute.updated", "created": created, "data": {"object": obj}}


class TestOrder:
    """An event moves its object only forward: by the state's rank, then what only grows,
    then Stripe's created; a tie of different states is undecided."""

    def known(self, event: dict[str, Any]) -> Known:
        seen = observe(event)
        assert seen is not None
        return seen.known

    def decision(self, before: dict[str, Any], after: dict[str, Any]) -> str:
        seen = observe(after)
        assert seen is not None
        return decide(self.known(before), seen)

    def test_a_later_state_moves_forward_and_an_earlier_one_is_stale(self) -> None:
        assert self.decision(dispute("needs_response"), dispute("lost")) == "forward"
        assert self.decision(dispute("lost"), dispute("needs_response")) == "stale"

    def test_an_older_failed_attempt_after_the_invoice_was_paid_is_stale(self) -> None:
        invoice = {"id": "in_1", "customer": "cus_1", "subscription": "sub_1", "attempt_count": 1}
        paid, failed = billing("invoice.paid", **invoice), billing("invoice.payment_failed", **invoice)
        assert self.decision(paid, failed) == "stale"
        assert self.decision(failed, paid) == "forward"

    def test_more_money_refunded_moves_a_charge_forward_less_does_not(self) -> None:
        charge = {"id": "ch_1", "customer": "cus_1", "payment_intent": "pi_1", "amount": 2500, "currency": "usd"}
        small, big = (billing("charge.refunded", **charge, amount_refunded=n) for n in (500, 2500))
        assert self.decision(small, big) == "forward"
        assert self.decision(big, small) == "stale"

    def test_two_different_final_states_at_the_same_second_are_undecided(self) -> None:
        assert self.decision(dispute("won", created=7), dispute("lost", created=7)) == "undecided"
        assert self.decision(dispute("won", created=7), dispute("lost", created=8)) == "forward"

    def test_the_same_state_again_is_stale(self) -> None:
        assert self.decision(dispute("lost"), dispute("lost", created=200)) == "stale"


class TestDisputeFacts:
    def test_an_opening_holds_and_a_close_releases_or_takes(self) -> None:
        opened = payment_fact(dispute("warning_needs_response"))
        assert isinstance(opened, DisputeOpened) and opened.inquiry
        closed = payment_fact(dispute("warning_closed"))
        assert isinstance(closed, DisputeClosed) and closed.outcome == "warning_closed"

    def test_an_inquiry_escalated_to_a_chargeback_keeps_its_one_hold(self) -> None:
        inquiry, chargeback = observe(dispute("warning_needs_response")), observe(dispute("needs_response"))
        assert inquiry is not None and chargeback is not None
        assert facts(inquiry.known, chargeback, CATALOG, "evt") == []


class TestMalformed:
    @pytest.mark.parametrize(
        "event",
        [
            {"id": "evt_m1", "type": "checkout.session.completed", "data": {"object": None}},
            {"id": "evt_m2", "type": "charge.refunded", "data": {}},
            {"id": "evt_m3", "type": "invoice.paid", "data": {"object": {"id": "in_1", "subscription": "sub_1"}}},
            {
                "id": "evt_m4",
                "type": "charge.dispute.created",
                "data": {"object": {"id": "dp_1", "payment_intent": "pi"}},
            },
            {"id": "evt_m5", "type": "charge.refunded", "data": {"object": {"id": "ch_1", "payment_intent": "pi_1"}}},
        ],
    )
    def test_a_signed_event_without_what_its_type_promises_is_malformed(self, event: dict[str, Any]) -> None:
        with pytest.raises(Malformed):
            observe(event)
