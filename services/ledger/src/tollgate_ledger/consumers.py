"""Kafka subscribers: parse the contract, hand it to a handler."""

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import PaymentsEvent, PaymentSucceeded, UsageRecorded, payments_event
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS, USAGE_RECORDED
from tollgate_shared.runtime import Runtime

from .handlers import burn_usage, credit_purchase

GROUP = "ledger"


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    async def on_payment(event: PaymentsEvent) -> None:
        if isinstance(event, PaymentSucceeded):
            await credit_purchase(event, runtime.pool)

    async def on_usage(event: UsageRecorded) -> None:
        await burn_usage(event, runtime.pool)

    subscribe(broker, PAYMENTS_EVENTS, group_id=GROUP, parse=payments_event.validate_json, handle=on_payment)
    subscribe(broker, USAGE_RECORDED, group_id=GROUP, parse=UsageRecorded.model_validate_json, handle=on_usage)
