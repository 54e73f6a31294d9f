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


PaymentsEvent = Annotated[PaymentSucceeded | SubscriptionStarted, Field(discriminator="event_type")]
payments_event = TypeAdapter[PaymentsEvent](PaymentsEvent)
