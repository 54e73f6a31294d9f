"""Events the keys service publishes: key lifecycle on `keys.events`, usage on `usage.recorded`."""

from datetime import datetime
from typing import Annotated, Literal, NotRequired
from uuid import UUID

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from .envelope import Event

Billing = Literal["prepaid", "metered"]


class KeyIssued(Event):
    """A key exists. Its plaintext travels only encrypted, for the notifier to deliver."""

    event_type: Literal["KeyIssued"] = "KeyIssued"
    key_id: UUID
    account_id: str
    customer_email: str
    customer_name: str | None = None
    plan: str
    product_name: str
    billing: Billing
    quota: int | None = Field(description="Lifetime units; None for metered keys")
    features: tuple[str, ...] = ()
    expires_at: datetime | None = None
    key_display: str = Field(description="Prefix and last four characters, safe to show")
    key_ciphertext: str = Field(description="Fernet token holding the plaintext key")


class KeyRevoked(Event):
    event_type: Literal["KeyRevoked"] = "KeyRevoked"
    key_id: UUID
    account_id: str
    reason: str


class KeyToppedUp(Event):
    """The customer bought the same pack again: their key's quota grew instead of a new key."""

    event_type: Literal["KeyToppedUp"] = "KeyToppedUp"
    key_id: UUID
    account_id: str
    customer_email: str
    customer_name: str | None = None
    product_name: str
    added: int = Field(gt=0)
    quota: int
    key_display: str


KeysEvent = Annotated[KeyIssued | KeyRevoked | KeyToppedUp, Field(discriminator="event_type")]
keys_event = TypeAdapter[KeysEvent](KeysEvent)


class UsageRecorded(Event):
    """Units a key consumed in one accepted validation. `event_id` is the usage id."""

    event_type: Literal["UsageRecorded"] = "UsageRecorded"
    key_id: UUID
    account_id: str
    plan: str
    billing: Billing
    units: int = Field(gt=0)
    key_units_total: int | None = Field(
        default=None,
        description="The key's cumulative units after this consumption. Strictly increasing per key, so a "
        "consumer can drop a re-published duplicate by keeping one watermark per key.",
    )
    route: str | None = None
    method: str | None = None
    status: int | None = None


class UsageIntake(TypedDict):
    """A validated, lightweight view of UsageRecorded for high-rate consumers.

    Parsing into a TypedDict skips building a frozen model per record and is about four
    times cheaper, which is what lets one process aggregate usage at Kafka speed. The
    types are still checked; a record that fails goes to the DLQ like any other. A unit
    test keeps this view in step with UsageRecorded.
    """

    event_id: str
    key_id: str
    account_id: str
    billing: Billing
    units: Annotated[int, Field(gt=0)]
    occurred_at: datetime
    # Optional on the contract, so absent from older records: read them with .get().
    key_units_total: NotRequired[int | None]
    route: NotRequired[str | None]
    method: NotRequired[str | None]
    status: NotRequired[int | None]


usage_intake = TypeAdapter[UsageIntake](UsageIntake)
