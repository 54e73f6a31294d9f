"""What the keys service consumes: payment facts (keys issued, suspended, resumed, revoked)
and the ledger's balances (the credits it gates spending on)."""

from dataclasses import dataclass

import asyncpg

from tollgate_shared.consumer import Subscription
from tollgate_shared.contracts import (
    BalanceUpdated,
    DisputeClosed,
    InvoicePaid,
    InvoicePaymentFailed,
    PaymentRefunded,
    PaymentsEvent,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    payments_event,
)
from tollgate_shared.contracts.topics import LEDGER_BALANCES, PAYMENTS_EVENTS

from .handlers import (
    KeySecrets,
    end_subscription,
    invoice_paid,
    issue_key,
    learn_balances,
    money_returned,
    payment_failed,
    top_up_keys,
)


@dataclass(frozen=True)
class Deps:
    secrets: KeySecrets
    payment_failure_grace_s: float


async def on_payments(deps: Deps, conn: asyncpg.Connection, events: list[PaymentsEvent]) -> None:
    for event in events:
        match event:
            case PaymentSucceeded() | SubscriptionStarted():
                await issue_key(event, conn, deps.secrets)
            case InvoicePaymentFailed():
                await payment_failed(event, conn, deps.payment_failure_grace_s)
            case InvoicePaid():
                await invoice_paid(event, conn)
            case SubscriptionEnded():
                await end_subscription(event, conn)
            case PaymentRefunded() | DisputeClosed():
                await money_returned(event, conn)
            case TopUpRequested() | TopUpSucceeded() | TopUpFailed():
                await top_up_keys(event, conn)


async def on_balances(_deps: Deps, conn: asyncpg.Connection, events: list[BalanceUpdated]) -> None:
    await learn_balances(events, conn)


PAYMENTS = Subscription(
    "payments",
    PAYMENTS_EVENTS,
    payments_event.validate_json,
    on_payments,
    "A paid session issues a key (or tops one up); invoices suspend and resume keys; an ended "
    "subscription revokes its keys; a pack whose money went back ends, and prepaid keys stop when none is left.",
)
BALANCES = Subscription(
    "balances",
    LEDGER_BALANCES,
    BalanceUpdated.model_validate_json,
    on_balances,
    "A customer's credits balance: keys refuses spending beyond what the ledger says is available.",
)
SUBSCRIPTIONS = (PAYMENTS, BALANCES)
