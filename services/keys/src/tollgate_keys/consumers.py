"""Kafka subscribers of the keys service."""

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import (
    BalanceUpdated,
    InvoicePaid,
    InvoicePaymentFailed,
    PaymentRefunded,
    PaymentsEvent,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
    payments_event,
)
from tollgate_shared.contracts.topics import LEDGER_BALANCES, PAYMENTS_EVENTS
from tollgate_shared.runtime import Runtime

from .handlers import KeySecrets, invoice_paid, issue_key, learn_balance, payment_failed, revoke_keys_of

GROUP = "keys"


def register(broker: KafkaBroker, runtime: Runtime, secrets: KeySecrets, payment_failure_grace_s: float) -> None:
    async def on_payment(event: PaymentsEvent) -> None:
        match event:
            case PaymentSucceeded() | SubscriptionStarted():
                await issue_key(event, runtime.pool, secrets)
            case InvoicePaymentFailed():
                await payment_failed(event, runtime.pool, payment_failure_grace_s)
            case InvoicePaid():
                await invoice_paid(event, runtime.pool)
            case SubscriptionEnded() | PaymentRefunded():
                await revoke_keys_of(event, runtime.pool)

    async def on_balance(event: BalanceUpdated) -> None:
        await learn_balance(event, runtime.pool)

    subscribe(broker, PAYMENTS_EVENTS, group_id=GROUP, parse=payments_event.validate_json, handle=on_payment)
    subscribe(
        broker,
        LEDGER_BALANCES,
        group_id=f"{GROUP}.balances",
        parse=BalanceUpdated.model_validate_json,
        handle=on_balance,
    )
