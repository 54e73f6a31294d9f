"""The ledger's Kafka contracts as a FastStream app, for the AsyncAPI document.

`docs/asyncapi/ledger.yaml` is generated from this (`python -m tollgate_ledger.cli
asyncapi`) and committed; a test fails when the two drift. The broker here is never
started: intake runs on tollgate_shared.tx_consumer (offsets in PostgreSQL), and
publishing goes through the outbox. It only describes the topics and their payloads.
"""

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from tollgate_shared.contracts import BalanceAlert, BalanceUpdated, PaymentsEvent, UsageRecorded
from tollgate_shared.contracts.topics import LEDGER_ALERTS, LEDGER_BALANCES, PAYMENTS_EVENTS, USAGE_RECORDED

from . import __version__


def contract_broker() -> KafkaBroker:
    broker = KafkaBroker("127.0.0.1:9092")

    @broker.subscriber(
        PAYMENTS_EVENTS.name,
        title="payments.events:ledger",
        description="Payments, refunds and disputes become journal entries, each once: keyed by the "
        "Checkout Session, the PaymentIntent's cumulative refund, or the dispute; offsets are stored "
        "with the entries in one PostgreSQL transaction.",
    )
    async def payments(event: PaymentsEvent) -> None:  # pragma: no cover - description only
        raise NotImplementedError

    @broker.subscriber(
        USAGE_RECORDED.name,
        title="usage.recorded:ledger",
        description="Prepaid usage is burned from the customer's credits in batches (one entry per "
        "account and hour per consumed batch); re-published records are dropped by key_units_total.",
    )
    async def usage(event: UsageRecorded) -> None:  # pragma: no cover - description only
        raise NotImplementedError

    broker.publisher(
        LEDGER_BALANCES.name,
        title="ledger.balances",
        description="Compacted; keyed by ledger account id. Each message is the account's full balance; "
        "`version` only increases per account, so keep the highest seen.",
        schema=BalanceUpdated,
    )
    broker.publisher(
        LEDGER_ALERTS.name,
        title="ledger.alerts",
        description="Keyed by customer. low_balance when available credits fall below the account's "
        "threshold, exhausted at zero, replenished when they recover; each crossing once.",
        schema=BalanceAlert,
    )
    return broker


def asyncapi_yaml() -> str:
    spec = AsyncAPI(
        contract_broker(),
        title="Tollgate ledger",
        version=__version__,
        description="What the ledger consumes and publishes on Kafka.",
    )
    # Sorted keys: FastStream's channel order can vary between processes, the file must not.
    document: str = yaml.safe_dump(spec.to_specification().to_jsonable(), sort_keys=True, width=100)
    return document
