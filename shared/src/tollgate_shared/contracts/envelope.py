"""The envelope every Tollgate event carries, and money as integer minor units."""

from datetime import UTC, datetime
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel, ConfigDict, Field

# Deterministic event ids: one business fact always gets the same id, whichever
# Stripe event or retry produced it, so every consumer's dedup sees one event.
EVENT_NAMESPACE = UUID("6c0e6f7e-3c2a-4d4e-9f55-0d4c8a1f7b21")


def utcnow() -> datetime:
    return datetime.now(UTC)


def event_id_for(*parts: str) -> UUID:
    return uuid5(EVENT_NAMESPACE, "/".join(parts))


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(Contract):
    event_id: UUID = Field(default_factory=uuid4)
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None
    causation_id: str | None = None


class Money(Contract):
    amount_minor: int = Field(ge=0, description="Integer minor units, e.g. cents")
    currency: str = Field(pattern=r"^[a-z]{3}$")
