"""What the notifier consumes: key events (keys to deliver), balance alerts and failed
payments (notices). One event per transaction: an email cannot be rolled back, so a
batch that failed half way must not send its first half again."""

import asyncpg

from tollgate_shared.consumer import Subscription
from tollgate_shared.contracts import (
    BalanceAlert,
    InvoicePaymentFailed,
    KeyIssued,
    KeysEvent,
    KeyToppedUp,
    PaymentsEvent,
    SignInLinkRequested,
    TopUpFailed,
    keys_event,
    payments_event,
)
from tollgate_shared.contracts.topics import KEYS_EVENTS, LEDGER_ALERTS, PAYMENTS_EVENTS, PORTAL_EVENTS

from .handlers import (
    Deps,
    email_auto_recharge_declined,
    email_balance_alert,
    email_new_key,
    email_payment_failed,
    email_sign_in_link,
    email_top_up,
)


async def on_key_events(deps: Deps, conn: asyncpg.Connection, events: list[KeysEvent]) -> None:
    for event in events:
        if isinstance(event, KeyIssued):
            await email_new_key(event, conn, deps)
        elif isinstance(event, KeyToppedUp):
            await email_top_up(event, conn, deps)


async def on_alerts(deps: Deps, conn: asyncpg.Connection, alerts: list[BalanceAlert]) -> None:
    for alert in alerts:
        await email_balance_alert(alert, conn, deps)


async def on_payments(deps: Deps, conn: asyncpg.Connection, events: list[PaymentsEvent]) -> None:
    for event in events:
        if isinstance(event, InvoicePaymentFailed):
            await email_payment_failed(event, conn, deps)
        elif isinstance(event, TopUpFailed):
            await email_auto_recharge_declined(event, conn, deps)


async def on_portal(deps: Deps, conn: asyncpg.Connection, events: list[SignInLinkRequested]) -> None:
    for event in events:
        await email_sign_in_link(event, conn, deps)


SUBSCRIPTIONS = (
    Subscription(
        "keys",
        KEYS_EVENTS,
        keys_event.validate_json,
        on_key_events,
        "A new key is emailed to the customer (its sealed plaintext opened only here); a top-up is confirmed.",
        max_records=1,
    ),
    Subscription(
        "alerts",
        LEDGER_ALERTS,
        BalanceAlert.model_validate_json,
        on_alerts,
        "Low and exhausted credits are emailed to the account's contact.",
        max_records=1,
    ),
    Subscription(
        "payments",
        PAYMENTS_EVENTS,
        payments_event.validate_json,
        on_payments,
        "A failed subscription payment, and a declined auto-recharge, are emailed to the account's contact.",
        max_records=1,
    ),
    Subscription(
        "portal",
        PORTAL_EVENTS,
        SignInLinkRequested.model_validate_json,
        on_portal,
        "A portal sign-in link is emailed (its sealed link opened only here).",
        max_records=1,
    ),
)
