"""Events the keys service publishes: key lifecycle on `keys.events`, usage on `usage.recorded`."""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from pydantic import Field, TypeAdapter

from .envelope import Event

Billing = Literal["prepaid", "metered"]


class KeyIssued(Event):
    """A key exists. Its plaintext is never in an event: the notifier fetches it, sealed,
    from the keys service's internal API, emails it, and has it deleted."""

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
    emailed: bool = Field(
        default=True,
        description="False: the plaintext was shown once to the customer who made the key (the portal); "
        "there is nothing to email",
    )


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


KEYS_MESSAGES = (KeyIssued, KeyRevoked, KeyToppedUp)
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


class UsageIntake(msgspec.Struct, frozen=True, gc=False):
    """A validated, lightweight view of UsageRecorded for high-rate consumers.

    Decoded by msgspec straight from the JSON bytes, types and bounds checked, about
    five times cheaper than a pydantic parse: at Kafka rates (hundreds of thousands of
    records a second) the parse is most of a consumer's cost. `gc=False` because a batch
    holds thousands of them and they never form cycles. A record that fails goes to the
    DLQ like any other. A unit test keeps this view in step with UsageRecorded.
    """

    event_id: str
    key_id: str
    account_id: str
    billing: Billing
    units: Annotated[int, msgspec.Meta(gt=0)]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    # Optional on the contract, so absent from older records.
    key_units_total: int | None = None
    route: str | None = None
    method: str | None = None
    status: int | None = None


# msgspec's errors are ValueErrors, so a bad record is dead-lettered like any other.
parse_usage = msgspec.json.Decoder(UsageIntake).decode


def usage_from(record: Mapping[str, Any]) -> UsageIntake:
    """A usage record already decoded from JSON (e.g. read back from the topic)."""
    return msgspec.convert(record, UsageIntake)
