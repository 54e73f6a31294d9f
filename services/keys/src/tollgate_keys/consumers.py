"""Kafka subscribers of the keys service."""

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import PaymentsEvent, payments_event
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.runtime import Runtime

from .handlers import KeySecrets, issue_key

GROUP = "keys"


def register(broker: KafkaBroker, runtime: Runtime, secrets: KeySecrets) -> None:
    async def on_payment(event: PaymentsEvent) -> None:
        await issue_key(event, runtime.pool, secrets)

    subscribe(broker, PAYMENTS_EVENTS, group_id=GROUP, parse=payments_event.validate_json, handle=on_payment)
