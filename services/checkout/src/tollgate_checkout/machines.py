"""The Stripe objects that move money or access, as state machines. Pure: no I/O.

Stripe does not deliver in order and retries for days, so a webhook is read as "this
object is now in state S", never as "this just happened". Each kind of object has its
own order of states (`rank`); within a state, what only grows (`progress`: the amount
refunded from a charge, the attempts at an invoice) orders it further, then Stripe's
`created`. An observation that moves the object forward is applied; one that does not
is stale, and changes nothing. Two different states of the same rank seen at the same
second (a dispute both won and lost) cannot be ordered from the events: the object is
then fetched from Stripe, and its current state decides.

A forward move may stand for facts on payments.events. A fact that depends on another
fact (a refund or a dispute on the payment; an invoice or a subscription's end on the
subscription's start) is parked until that one has been published: `needs` names what
it waits for, `provides` what a paid session lets go. docs/payments.md draws each
machine.
"""

from dataclasses import dataclass
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

from .domain import Catalog, Malformed, UnknownPlan, Unprocessable

Kind = Literal["checkout_session", "charge", "dispute", "invoice", "subscription"]
Decision = Literal["forward", "stale", "undecided"]


@dataclass(frozen=True)
class Known:
    """Where an object stands, as far as the events applied so far say."""

    state: str
    rank: int
    progress: int
    created: int


@dataclass(frozen=True)
class Observation:
    """What one event (or one fetched object) says about one Stripe object."""

    kind: Kind
    object_id: str
    state: str
    rank: int
    progress: int
    created: int
    account_id: str | None
    needs: str | None
    provides: tuple[str, ...]
    obj: dict[str, Any]

    @property
    def known(self) -> Known:
        return Known(self.state, self.rank, self.progress, self.created)


def decide(known: Known | None, seen: Observation) -> Decision:
    if known is None:
        return "forward"
    new, old = (seen.rank, seen.progress), (known.rank, known.progress)
    if new != old:
        return "forward" if new > old else "stale"
    if seen.state == known.state:
        return "stale"  # the same state again: a redelivery, or another event saying it
    if seen.created != known.created:
        return "forward" if seen.created > known.created else "stale"
    return "undecided"


# --- reading an event ------------------------------------------------------------------------

SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
CHARGE_EVENTS = {"charge.refunded"}
DISPUTE_EVENTS = {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"}
INVOICE_EVENTS = {"invoice.payment_failed", "invoice.paid", "invoice.payment_succeeded", "invoice.voided"}
SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
}
# Top-ups' outcomes, and payments made outside Tollgate (top_ups.py; not a state machine:
# a PaymentIntent's outcome is final, and a top-up moves once).
PAYMENT_INTENT_EVENTS = {"payment_intent.succeeded", "payment_intent.payment_failed"}
HANDLED = SESSION_EVENTS | CHARGE_EVENTS | DISPUTE_EVENTS | INVOICE_EVENTS | SUBSCRIPTION_EVENTS | PAYMENT_INTENT_EVENTS
EVENTS_OF: dict[Kind, set[str]] = {
    "checkout_session": SESSION_EVENTS,
    "charge": CHARGE_EVENTS,
    "dispute": DISPUTE_EVENTS,
    "invoice": INVOICE_EVENTS,
    "subscription": SUBSCRIPTION_EVENTS,
}
KIND_OF: dict[str, Kind] = {event_type: kind for kind, types in EVENTS_OF.items() for event_type in types}
DISPUTE_RANK = {
    "warning_needs_response": 1,
    "warning_under_review": 2,
    "needs_response": 3,
    "under_review": 4,
    "warning_closed": 5,
    "won": 5,
    "lost": 5,
}
CLOSED_DISPUTE = frozenset({"warning_closed", "won", "lost"})


def observe(event: dict[str, Any]) -> Observation | None:
    """What a verified Stripe event says, or None if it says nothing Tollgate acts on.
    Raises Malformed when the event lacks what its type promises."""
    kind = KIND_OF.get(str(event.get("type")))
    if kind is None:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise Malformed(f"{event.get('type')} without a data.object carrying an id")
    created = event.get("created")
    return observe_object(kind, obj, int(created) if isinstance(created, int) else 0, str(event["type"]))


def observe_object(kind: Kind, obj: dict[str, Any], created: int, event_type: str = "") -> Observation | None:
    """What a Stripe object says about itself (as a webhook carries it, or as fetched)."""
    try:
        seen: Observation | None = _READERS[kind](obj, created, event_type)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"{kind} {obj.get('id')}: {exc!r}") from None
    return seen


def _seen(kind: Kind, obj: dict[str, Any], state: str, rank: int, created: int, **rest: Any) -> Observation:
    return Observation(
        kind=kind,
        object_id=obj["id"],
        state=state,
        rank=rank,
        progress=rest.pop("progress", 0),
        created=created,
        account_id=rest.pop("account_id", None),
        needs=rest.pop("needs", None),
        provides=rest.pop("provides", ()),
        obj=obj,
    )


def _session(obj: dict[str, Any], created: int, event_type: str) -> Observation:
    if event_type == "checkout.session.expired" or obj.get("status") == "expired":
        state, rank = "expired", 2
    elif event_type == "checkout.session.async_payment_failed":
        state, rank = "payment_failed", 2
    elif obj.get("payment_status") in ("paid", "no_payment_required"):
        state, rank = "paid", 2
    else:
        state, rank = "awaiting_payment", 1  # an async method: its own event follows
    provides = []
    if state == "paid":
        if obj.get("payment_intent"):
            provides.append(f"payment:{obj['payment_intent']}")
        if obj.get("subscription"):
            provides.append(f"subscription:{obj['subscription']}")
    customer = obj.get("customer")
    return _seen("checkout_session", obj, state, rank, created, account_id=customer, provides=tuple(provides))


def _charge(obj: dict[str, Any], created: int, _event_type: str) -> Observation | None:
    if not obj.get("payment_intent"):
        return None  # a charge no Tollgate payment made
    refunded = int(obj["amount_refunded"])
    return _seen(
        "charge",
        obj,
        "refunded",
        1,
        created,
        progress=refunded,
        account_id=obj.get("customer"),
        needs=f"payment:{obj['payment_intent']}",
    )


def _dispute(obj: dict[str, Any], created: int, _event_type: str) -> Observation | None:
    if not obj.get("payment_intent"):
        return None
    status = str(obj["status"])
    if status not in DISPUTE_RANK:
        raise ValueError(f"unknown dispute status {status!r}")
    account = obj.get("customer") or (obj.get("metadata") or {}).get("customer")
    needs = f"payment:{obj['payment_intent']}"
    return _seen("dispute", obj, status, DISPUTE_RANK[status], created, account_id=account, needs=needs)


def _invoice(obj: dict[str, Any], created: int, event_type: str) -> Observation | None:
    subscription = subscription_of(obj)
    if not subscription:
        return None  # a one-off invoice: no key hangs on it
    status = obj.get("status")
    if event_type == "invoice.voided" or status == "void":
        state, rank = "void", 2
    elif event_type in ("invoice.paid", "invoice.payment_succeeded") or status == "paid":
        state, rank = "paid", 2
    else:
        state, rank = "payment_failed", 1
    attempts = int(obj.get("attempt_count") or 0)
    return _seen(
        "invoice",
        obj,
        state,
        rank,
        created,
        progress=attempts,
        account_id=obj["customer"],
        needs=f"subscription:{subscription}",
    )


def _subscription(obj: dict[str, Any], created: int, event_type: str) -> Observation:
    ended = event_type == "customer.subscription.deleted" or obj.get("status") in ("canceled", "incomplete_expired")
    state, rank = ("ended", 2) if ended else ("live", 1)
    return _seen(
        "subscription",
        obj,
        state,
        rank,
        created,
        account_id=obj["customer"],
        needs=f"subscription:{obj['id']}",
    )


_READERS: dict[str, Any] = {
    "checkout_session": _session,
    "charge": _charge,
    "dispute": _dispute,
    "invoice": _invoice,
    "subscription": _subscription,
}


def subscription_of(invoice: dict[str, Any]) -> str:
    # Newer API versions moved it under parent.subscription_details.
    parent = (invoice.get("parent") or {}).get("subscription_details") or {}
    return str(invoice.get("subscription") or parent.get("subscription") or "")


# --- what a forward move stands for ----------------------------------------------------------


def facts(previous: Known | None, seen: Observation, catalog: Catalog, causation: str) -> list[Event]:
    """The facts a forward move from `previous` to `seen` publishes, in order. Event ids
    derive from the business object, so two events saying one thing are one fact."""
    match seen.kind:
        case "checkout_session":
            return [_purchase(seen, catalog, causation)] if seen.state == "paid" else []
        case "charge":
            return [_refund(seen, causation)]
        case "dispute":
            return _dispute_facts(previous, seen, causation)
        case "invoice":
            return _invoice_facts(seen, causation)
        case "subscription":
            return [_ended(seen, causation)] if seen.state == "ended" else []
    return []


def _purchase(seen: Observation, catalog: Catalog, causation: str) -> Event:
    session = seen.obj
    metadata = session.get("metadata") or {}
    try:
        plan = catalog.get(metadata.get("plan", ""))
    except UnknownPlan:
        raise Unprocessable(f"unknown plan {metadata.get('plan')!r} on session {session['id']}") from None
    if not seen.account_id:
        raise Unprocessable(f"session {session['id']} has no customer")
    details = session.get("customer_details") or {}
    common: dict[str, Any] = {
        "account_id": seen.account_id,
        "customer_email": details.get("email") or session.get("customer_email") or "",
        "customer_name": details.get("name"),
        "plan": plan.name,
        "product_name": plan.product_name,
        "features": plan.features,
        "checkout_session_id": session["id"],
        "causation_id": causation,
        "correlation_id": session["id"],
    }
    if session.get("mode") == "subscription":
        return SubscriptionStarted(
            event_id=event_id_for("SubscriptionStarted", session["id"]),
            subscription_id=session.get("subscription") or "",
            **common,
        )
    return PaymentSucceeded(
        event_id=event_id_for("PaymentSucceeded", session["id"]),
        credits=plan.credits * int(metadata.get("quantity", "1")),
        amount=Money(amount_minor=int(session.get("amount_total") or 0), currency=session.get("currency") or "usd"),
        payment_intent_id=session.get("payment_intent"),
        **common,
    )


def _refund(seen: Observation, causation: str) -> Event:
    charge = seen.obj
    refunded = seen.progress
    return PaymentRefunded(
        event_id=event_id_for("PaymentRefunded", charge["id"], str(refunded)),
        causation_id=causation,
        account_id=seen.account_id or "",
        payment_intent_id=charge["payment_intent"],
        amount_refunded=Money(amount_minor=refunded, currency=charge.get("currency") or "usd"),
        full=bool(charge.get("refunded")) or refunded >= int(charge.get("amount") or 0),
    )


def _dispute_facts(previous: Known | None, seen: Observation, causation: str) -> list[Event]:
    dispute = seen.obj
    common: dict[str, Any] = {
        "causation_id": causation,
        "account_id": seen.account_id,
        "dispute_id": dispute["id"],
        "payment_intent_id": dispute["payment_intent"],
        "amount": Money(amount_minor=int(dispute.get("amount") or 0), currency=dispute.get("currency") or "usd"),
    }
    if seen.state in CLOSED_DISPUTE:
        # A close whose opening was never seen is one fact; the ledger books both.
        event_id = event_id_for("DisputeClosed", dispute["id"], seen.state)
        closed = DisputeClosed(event_id=event_id, outcome=seen.state, **common)  # type: ignore[arg-type]
        return [closed]
    if previous is None:
        inquiry = seen.state.startswith("warning_")
        return [DisputeOpened(event_id=event_id_for("DisputeOpened", dispute["id"]), inquiry=inquiry, **common)]
    return []  # still open (an inquiry under review, or escalated): the hold stands


def _invoice_facts(seen: Observation, causation: str) -> list[Event]:
    invoice = seen.obj
    common: dict[str, Any] = {
        "causation_id": causation,
        "account_id": seen.account_id,
        "subscription_id": subscription_of(invoice),
        "invoice_id": invoice["id"],
    }
    if seen.state == "payment_failed":
        event_id = event_id_for("InvoicePaymentFailed", invoice["id"], str(seen.progress))
        return [InvoicePaymentFailed(event_id=event_id, attempt_count=seen.progress, **common)]
    if seen.state == "paid":
        return [InvoicePaid(event_id=event_id_for("InvoicePaid", invoice["id"]), **common)]
    return []


def _ended(seen: Observation, causation: str) -> Event:
    return SubscriptionEnded(
        event_id=event_id_for("SubscriptionEnded", seen.object_id),
        causation_id=causation,
        account_id=seen.account_id or "",
        subscription_id=seen.object_id,
    )
