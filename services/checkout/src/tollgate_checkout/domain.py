"""Plans, and what a verified Stripe event means for Tollgate. Pure: no I/O."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tollgate_shared.contracts import Money, PaymentSucceeded, SubscriptionStarted, event_id_for

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


def payment_fact(event: dict[str, Any], catalog: Catalog) -> PaymentSucceeded | SubscriptionStarted | None:
    """The Tollgate event a Stripe event stands for, or None if it needs no action.

    Event ids derive from the Checkout Session id, not the Stripe event id: several
    Stripe events can describe one payment, and downstream must see one fact.
    """
    if event.get("type") not in COMPLETION_EVENTS:
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
