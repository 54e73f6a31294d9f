import json
import os
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError

from tollgate_shared.contracts import (
    BalanceAlert,
    BalanceUpdated,
    DisputeClosed,
    DisputeOpened,
    InvoicePaid,
    InvoicePaymentFailed,
    KeyIssued,
    KeyRevoked,
    KeyToppedUp,
    Money,
    PaymentRefunded,
    PaymentSucceeded,
    SignInLinkRequested,
    SubscriptionEnded,
    SubscriptionStarted,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    UsageIntake,
    UsageRecorded,
    UsageReported,
    event_id_for,
    keys_event,
    parse_usage,
    payments_event,
    usage_from,
)
from tollgate_shared.contracts.compat import breaking_changes

SNAPSHOTS = Path(__file__).resolve().parents[3] / "docs" / "schemas"  # published: consumers read them
CONTRACTS: list[type[BaseModel]] = [
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
    SignInLinkRequested,
    KeyIssued,
    KeyRevoked,
    KeyToppedUp,
    UsageRecorded,
    BalanceUpdated,
    BalanceAlert,
    UsageReported,
]


def payment(**overrides: object) -> PaymentSucceeded:
    fields: dict[str, object] = {
        "account_id": "cus_1",
        "customer_email": "a@example.com",
        "plan": "professional",
        "product_name": "Pro",
        "credits": 10_000,
        "amount": Money(amount_minor=2500, currency="usd"),
        "checkout_session_id": "cs_1",
    }
    return PaymentSucceeded(**(fields | overrides))


class TestEnvelope:
    def test_round_trips_through_json(self) -> None:
        event = payment()
        assert payments_event.validate_json(event.model_dump_json()) == event

    def test_discriminates_on_event_type(self) -> None:
        started = SubscriptionStarted(
            account_id="cus_1",
            customer_email="a@example.com",
            plan="metered",
            product_name="M",
            checkout_session_id="cs_2",
            subscription_id="sub_1",
        )
        parsed = payments_event.validate_json(started.model_dump_json())
        assert isinstance(parsed, SubscriptionStarted)

    def test_unknown_fields_are_ignored_so_producers_can_add_fields(self) -> None:
        raw = json.loads(payment().model_dump_json()) | {"added_later": 1}
        assert payments_event.validate_python(raw).account_id == "cus_1"

    def test_events_are_immutable(self) -> None:
        with pytest.raises(ValidationError):
            payment().credits = 5  # type: ignore[misc]

    def test_event_ids_for_one_fact_are_stable(self) -> None:
        assert event_id_for("PaymentSucceeded", "cs_1") == event_id_for("PaymentSucceeded", "cs_1")
        assert event_id_for("PaymentSucceeded", "cs_1") != event_id_for("PaymentSucceeded", "cs_2")


class TestMoney:
    def test_is_integer_minor_units(self) -> None:
        with pytest.raises(ValidationError):
            Money(amount_minor=9.99, currency="usd")  # type: ignore[arg-type]

    def test_refuses_negative_and_odd_currencies(self) -> None:
        with pytest.raises(ValidationError):
            Money(amount_minor=-1, currency="usd")
        with pytest.raises(ValidationError):
            Money(amount_minor=1, currency="US Dollars")


class TestUsageIntake:
    def test_parses_what_usage_recorded_serialises(self) -> None:
        event = UsageRecorded(
            key_id=uuid4(),
            account_id="cus_1",
            plan="p",
            billing="metered",
            units=3,
            key_units_total=9,
            route="/v1/x",
            method="GET",
            status=200,
        )
        intake = parse_usage(event.model_dump_json())
        assert intake.key_id == str(event.key_id) and intake.occurred_at == event.occurred_at
        assert (intake.units, intake.key_units_total, intake.billing) == (3, 9, "metered")

    def test_every_intake_field_exists_on_the_contract(self) -> None:
        assert set(UsageIntake.__struct_fields__) <= set(UsageRecorded.model_fields)

    def test_reads_records_from_producers_without_the_optional_fields(self) -> None:
        old = json.loads(
            UsageRecorded(key_id=uuid4(), account_id="c", plan="p", billing="prepaid", units=1).model_dump_json()
        )
        for optional in ("key_units_total", "route", "method", "status"):
            del old[optional]
        intake = parse_usage(json.dumps(old))
        assert (intake.key_units_total, intake.route, intake.method, intake.status) == (None, None, None, None)
        assert usage_from(old) == intake

    @pytest.mark.parametrize(
        "bad",
        [
            {"units": 0},
            {"units": "3"},
            {"units": 1.5},
            {"billing": "free"},
            {"occurred_at": "soon"},
            {"occurred_at": "2026-11-22T08:00:00"},  # no timezone: which hour would it bill?
            {"account_id": None},
        ],
    )
    def test_refuses_what_the_contract_refuses(self, bad: dict[str, object]) -> None:
        good = json.loads(
            UsageRecorded(key_id=uuid4(), account_id="c", plan="p", billing="prepaid", units=1).model_dump_json()
        )
        parse_usage(json.dumps(good))
        with pytest.raises(ValueError):
            parse_usage(json.dumps(good | bad))
        with pytest.raises(ValueError):
            usage_from(good | bad)

    def test_refuses_what_is_not_json(self) -> None:
        with pytest.raises(ValueError):
            parse_usage(b'{"units": 1')


class TestUsage:
    def test_units_must_be_positive(self) -> None:
        with pytest.raises(ValidationError):
            UsageRecorded(key_id=uuid4(), account_id="cus_1", plan="p", billing="prepaid", units=0)

    def test_keys_events_parse_by_type(self) -> None:
        revoked = KeyRevoked(key_id=uuid4(), account_id="cus_1", reason="admin")
        assert isinstance(keys_event.validate_json(revoked.model_dump_json()), KeyRevoked)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__)
def test_json_schema_matches_snapshot(contract: type[BaseModel]) -> None:
    """A contract change must be deliberate: regenerate with UPDATE_SNAPSHOTS=1 and review the diff."""
    path = SNAPSHOTS / f"{contract.__name__}.json"
    schema = json.dumps(contract.model_json_schema(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(schema)
    assert path.exists(), f"no snapshot for {contract.__name__}; run with UPDATE_SNAPSHOTS=1"
    assert schema == path.read_text()


class TestCompatibility:
    """The contracts published in docs/schemas are a promise to consumers: a change that
    would break one fails here (tollgate_shared.contracts.compat says which changes do)."""

    @pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__)
    def test_no_contract_breaks_its_published_schema(self, contract: type[BaseModel]) -> None:
        published = json.loads((SNAPSHOTS / f"{contract.__name__}.json").read_text())
        assert breaking_changes(published, contract.model_json_schema()) == []

    def test_every_published_schema_still_has_its_contract(self) -> None:
        assert {p.stem for p in SNAPSHOTS.glob("*.json")} == {c.__name__ for c in CONTRACTS}

    def test_what_breaks_a_consumer_is_caught_and_what_does_not_is_allowed(self) -> None:
        from typing import Literal

        from pydantic import Field

        class Old(BaseModel):
            account_id: str
            amount: int
            kind: Literal["a", "b"]
            note: str | None = None

        def changes(new: type[BaseModel]) -> list[str]:
            return breaking_changes(Old.model_json_schema(), new.model_json_schema())

        class Added(Old):
            extra: int = 0
            more: str = Field(default="x")

        class Widened(BaseModel):
            account_id: str
            amount: int
            kind: Literal["a", "b", "c"]
            note: str  # optional became required: consumers are fine

        class Removed(BaseModel):
            account_id: str
            kind: Literal["a", "b"]
            note: str | None = None

        class Retyped(BaseModel):
            account_id: str
            amount: str
            kind: Literal["a", "b"]
            note: str | None = None

        class Tightened(BaseModel):
            account_id: str
            amount: int
            kind: Literal["a"]
            note: str | None = None

        class Loosened(BaseModel):
            account_id: str | None = None
            amount: int
            kind: Literal["a", "b"]
            note: str | None = None

        assert changes(Added) == [] and changes(Widened) == []
        assert changes(Removed) == ["amount: removed"]
        (retyped,) = changes(Retyped)
        assert retyped.startswith("amount: type") and "integer" in retyped and "string" in retyped
        assert changes(Tightened) == ["kind: values ['b'] no longer allowed"]
        loosened = changes(Loosened)
        assert loosened[0] == "account_id: was required, now optional" and "null" in loosened[1]
