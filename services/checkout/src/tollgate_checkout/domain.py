"""Plans, and what a verified Stripe event means for Tollgate. Pure: no I/O."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    Event,
    InvoicePaid,
    InvoicePaymentFailed,
    Money,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
    event_id_for,
)

DEFAULT_PLANS_PATH = Path(__file__).with_name("plans.json")


@dataclass(frozen=True)
class Plan:
    name: str
    product_name: str
    mode: Literal["payment", "subscription"]
    features: tuple[str, ...]
    credits: int = 0
    price: Money | None = None
    stripe_price: str | None = None


class UnknownPlan(LookupError):
    pass


class Catalog:
    def __init__(self, plans: dict[str, Plan]) -> None:
        self._plans = plans

    @classmethod
    def load(cls, path: Path) -> "Catalog":
        raw = json.loads(path.read_text())["plans"]
        return cls(
            {
                name: Plan(
                    name=name,
                    product_name=p["product_name"],
                    mode=p["mode"],
                    features=tuple(p.get("features", ())),
                    credits=int(p.get("credits", 0)),
                    price=Money(**p["price"]) if "price" in p else None,
                    stripe_price=p.get("stripe_price"),
                )
                for name, p in raw.items()
            }
        )

    def get(self, name: str) -> Plan:
        try:
            return self._plans[name]
        except KeyError:
            raise UnknownPlan(name) from None

    def names(self) -> list[str]:
        return sorted(self._plans)


class Unprocessable(ValueError):
    """A genuine Stripe event we cannot turn into a Tollgate fact (e.g. unknown plan)."""


# Both mean "the customer paid for this session"; async methods (bank debits) send the second.
COMPLETION_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}


def payment_fact(event: dict[str, Any], catalog: Catalog) -> Event | None:
    """The Tollgate event a Stripe event stands for, or None if it needs no action.

    Event ids derive from the business object (Checkout Session, invoice, subscription,
    charge), not the Stripe event id: several Stripe events can describe one payment,
    and downstream must see one fact.
    """
    kind = event.get("type")
    obj = event.get("data", {}).get("object", {})
    if kind in BILLING_FACTS:
        return BILLING_FACTS[kind](obj, event["id"])
    if kind not in COMPLETION_EVENTS:
        return None
    session = event["data"]["object"]
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return None  # the async_payment_succeeded event will follow
    metadata = session.get("metadata") or {}
    try:
        plan = catalog.get(metadata.get("plan", ""))
    except UnknownPlan:
        raise Unprocessable(f"unknown plan {metadata.get('plan')!r} on session {session.get('id')}") from None
    details = session.get("customer_details") or {}
    common = {
        "account_id": session.get("customer") or "",
        "customer_email": details.get("email") or session.get("customer_email") or "",
        "customer_name": details.get("name"),
        "plan": plan.name,
        "product_name": plan.product_name,
        "features": plan.features,
        "checkout_session_id": session["id"],
        "causation_id": event["id"],
        "correlation_id": session["id"],
    }
    if not common["account_id"]:
        raise Unprocessable(f"session {session['id']} has no customer")
    if session.get("mode") == "subscription":
        return SubscriptionStarted(
            event_id=event_id_for("SubscriptionStarted", session["id"]),
            subscription_id=session.get("subscription") or "",
            **common,
        )
    quantity = int(metadata.get("quantity", "1"))
    return PaymentSucceeded(
        event_id=event_id_for("PaymentSucceeded", session["id"]),
        credits=plan.credits * quantity,
        amount=Money(amount_minor=int(session.get("amount_total") or 0), currency=session.get("currency") or "usd"),
        payment_intent_id=session.get("payment_intent"),
        **common,
    )


def _subscription_of(invoice: dict[str, Any]) -> str:
    # Newer API versions moved it under parent.subscription_details.
    parent = (invoice.get("parent") or {}).get("subscription_details") or {}
    return str(invoice.get("subscription") or parent.get("subscription") or "")


def _payment_failed(invoice: dict[str, Any], causation: str) -> Event | None:
    if not _subscription_of(invoice):
        return None  # a one-off invoice: no key hangs on it
    return InvoicePaymentFailed(
        event_id=event_id_for("InvoicePaymentFailed", invoice["id"], str(invoice.get("attempt_count", 0))),
        causation_id=causation,
        account_id=invoice["customer"],
        subscription_id=_subscription_of(invoice),
        invoice_id=invoice["id"],
        attempt_count=int(invoice.get("attempt_count") or 0),
    )


def _invoice_paid(invoice: dict[str, Any], causation: str) -> Event | None:
    if not _subscription_of(invoice):
        return None
    return InvoicePaid(
        event_id=event_id_for("InvoicePaid", invoice["id"]),
        causation_id=causation,
        account_id=invoice["customer"],
        subscription_id=_subscription_of(invoice),
        invoice_id=invoice["id"],
    )


def _subscription_deleted(subscription: dict[str, Any], causation: str) -> Event | None:
    return SubscriptionEnded(
        event_id=event_id_for("SubscriptionEnded", subscription["id"]),
        causation_id=causation,
        account_id=subscription["customer"],
        subscription_id=subscription["id"],
    )


def _charge_refunded(charge: dict[str, Any], causation: str) -> Event | None:
    if not charge.get("payment_intent") or not charge.get("customer"):
        return None
    refunded = int(charge.get("amount_refunded") or 0)
    return PaymentRefunded(
        event_id=event_id_for("PaymentRefunded", charge["id"], str(refunded)),
        causation_id=causation,
        account_id=charge["customer"],
        payment_intent_id=charge["payment_intent"],
        amount_refunded=Money(amount_minor=refunded, currency=charge.get("currency") or "usd"),
        full=bool(charge.get("refunded")) or refunded >= int(charge.get("amount") or 0),
    )


def _dispute(dispute: dict[str, Any], causation: str) -> Event | None:
    if not dispute.get("payment_intent"):
        return None
    common: dict[str, Any] = {
        "causation_id": causation,
        "account_id": dispute.get("customer") or (dispute.get("metadata") or {}).get("customer"),
        "dispute_id": dispute["id"],
        "payment_intent_id": dispute["payment_intent"],
        "amount": Money(amount_minor=int(dispute.get("amount") or 0), currency=dispute.get("currency") or "usd"),
    }
    status = dispute.get("status")
    if status in ("won", "lost"):
        return DisputeClosed(event_id=event_id_for("DisputeClosed", dispute["id"]), outcome=status, **common)
    return DisputeOpened(event_id=event_id_for("DisputeOpened", dispute["id"]), **common)


BILLING_FACTS: dict[str, Callable[[dict[str, Any], str], Event | None]] = {
    "invoice.payment_failed": _payment_failed,
    "invoice.paid": _invoice_paid,
    "customer.subscription.deleted": _subscription_deleted,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute,
    "charge.dispute.closed": _dispute,
}
