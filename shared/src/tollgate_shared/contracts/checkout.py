"""Events checkout publishes on `payments.events`."""

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from .envelope import Event, Money


class CustomerRef(Event):
    account_id: str = Field(description="Tollgate account id: the Stripe customer id")
    customer_email: str
    customer_name: str | None = None
    plan: str
    product_name: str
    features: tuple[str, ...] = ()


class PaymentSucceeded(CustomerRef):
    """A prepaid pack was paid for: the customer now holds `credits` call credits."""

    event_type: Literal["PaymentSucceeded"] = "PaymentSucceeded"
    billing: Literal["prepaid"] = "prepaid"
    credits: int = Field(gt=0)
    amount: Money
    checkout_session_id: str
    payment_intent_id: str | None = None


class SubscriptionStarted(CustomerRef):
    """A metered subscription began: usage is billed afterwards through Stripe meters."""

    event_type: Literal["SubscriptionStarted"] = "SubscriptionStarted"
    billing: Literal["metered"] = "metered"
    checkout_session_id: str
    subscription_id: str


class BillingFact(Event):
    account_id: str = Field(description="Tollgate account id: the Stripe customer id")


class InvoicePaymentFailed(BillingFact):
    """A subscription invoice could not be collected: its keys are suspended after a grace."""

    event_type: Literal["InvoicePaymentFailed"] = "InvoicePaymentFailed"
    subscription_id: str
    invoice_id: str
    attempt_count: int = 0


class InvoicePaid(BillingFact):
    """A subscription invoice was paid: keys the subscription's unpaid invoice stopped resume."""

    event_type: Literal["InvoicePaid"] = "InvoicePaid"
    subscription_id: str
    invoice_id: str


class SubscriptionEnded(BillingFact):
    """The subscription was deleted: its keys are revoked."""

    event_type: Literal["SubscriptionEnded"] = "SubscriptionEnded"
    subscription_id: str


class PaymentRefunded(BillingFact):
    """Money went back to the customer: `amount_refunded` is the charge's total refunded
    so far (it only grows), `full` when that is the whole charge."""

    event_type: Literal["PaymentRefunded"] = "PaymentRefunded"
    payment_intent_id: str
    amount_refunded: Money
    full: bool


class DisputeFact(Event):
    # Stripe's dispute object names the charge and PaymentIntent, not the customer.
    account_id: str | None = Field(default=None, description="The customer, when known")
    dispute_id: str
    payment_intent_id: str
    amount: Money


class DisputeOpened(DisputeFact):
    """The customer disputed a charge, or the bank inquired about it: the money is held
    until the dispute closes."""

    event_type: Literal["DisputeOpened"] = "DisputeOpened"
    inquiry: bool = Field(default=False, description="An inquiry (Stripe's warning_* statuses), not yet a chargeback")


class DisputeClosed(DisputeFact):
    """A dispute ended: `won` keeps the money, `lost` gives it up (and the credits it
    bought), `warning_closed` ends an inquiry that never became a chargeback."""

    event_type: Literal["DisputeClosed"] = "DisputeClosed"
    outcome: Literal["won", "lost", "warning_closed"]


TopUpSource = Literal["api", "portal", "auto_recharge", "outside"]


class TopUpFact(BillingFact):
    top_up_id: str
    credits: int = Field(gt=0)
    amount: Money
    source: TopUpSource = Field(
        description="api: POST /v1/top-ups; portal: the customer's page; auto_recharge: their rule fired; "
        "outside: a payment made outside Tollgate (Stripe's dashboard) for a Tollgate customer"
    )


class TopUpRequested(TopUpFact):
    """Credits were asked for and the card on file is being charged: they are pending
    until the charge settles (the balance's `available` moves now, `current` later)."""

    event_type: Literal["TopUpRequested"] = "TopUpRequested"


class TopUpSucceeded(TopUpFact):
    """The charge for a top-up went through: its credits are posted (its pending credits,
    or, paid outside Tollgate, credits at the configured rate at once)."""

    event_type: Literal["TopUpSucceeded"] = "TopUpSucceeded"
    payment_intent_id: str


class TopUpFailed(TopUpFact):
    """The charge for a top-up failed: its pending credits are voided."""

    event_type: Literal["TopUpFailed"] = "TopUpFailed"
    reason: str = Field(description="Stripe's decline code, or why the charge could not be made")


PAYMENTS_MESSAGES = (
    PaymentSucceeded,
    SubscriptionStarted,
    InvoicePaymentFailed,
    InvoicePaid,
    SubscriptionEnded,
    PaymentRefunded,
    DisputeOpened,
    DisputeClosed,
    TopUpRequested,
    TopUpSucceeded,
    TopUpFailed,
)
PaymentsEvent = Annotated[
    PaymentSucceeded
    | SubscriptionStarted
    | InvoicePaymentFailed
    | InvoicePaid
    | SubscriptionEnded
    | PaymentRefunded
    | DisputeOpened
    | DisputeClosed
    | TopUpRequested
    | TopUpSucceeded
    | TopUpFailed,
    Field(discriminator="event_type"),
]
payments_event = TypeAdapter[PaymentsEvent](PaymentsEvent)
