"""Kafka subscribers of the notifier."""

from collections.abc import Callable

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import (
    BalanceAlert,
    InvoicePaymentFailed,
    KeyIssued,
    KeysEvent,
    KeyToppedUp,
    PaymentsEvent,
    keys_event,
    payments_event,
)
from tollgate_shared.contracts.topics import KEYS_EVENTS, LEDGER_ALERTS, PAYMENTS_EVENTS

from .handlers import (
    NotifierDeps,
    email_balance_alert,
    email_new_key,
    email_payment_failed,
    email_top_up,
    remember_contact,
)

GROUP = "notifier"


def register(broker: KafkaBroker, deps: Callable[[], NotifierDeps]) -> None:
    async def on_key_event(event: KeysEvent) -> None:
        if isinstance(event, KeyIssued):
            await remember_contact(event, deps())
            await email_new_key(event, deps())
        elif isinstance(event, KeyToppedUp):
            await remember_contact(event, deps())
            await email_top_up(event, deps())

    async def on_alert(alert: BalanceAlert) -> None:
        await email_balance_alert(alert, deps())

    async def on_payment(event: PaymentsEvent) -> None:
        if isinstance(event, InvoicePaymentFailed):
            await email_payment_failed(event, deps())

    subscribe(broker, KEYS_EVENTS, group_id=GROUP, parse=keys_event.validate_json, handle=on_key_event)
    subscribe(broker, LEDGER_ALERTS, group_id=GROUP, parse=BalanceAlert.model_validate_json, handle=on_alert)
    subscribe(broker, PAYMENTS_EVENTS, group_id=GROUP, parse=payments_event.validate_json, handle=on_payment)
