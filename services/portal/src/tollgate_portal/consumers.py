"""What the portal consumes: usage (its charts, per key and hour), the ledger's balances
(auto-recharge), payments (a recharge that failed after the fact), and key events (who
may sign in)."""

from dataclasses import dataclass

import asyncpg

from tollgate_shared.consumer import BATCH_RECORDS, Subscription
from tollgate_shared.contracts import (
    BalanceUpdated,
    KeyIssued,
    KeysEvent,
    PaymentsEvent,
    TopUpFailed,
    UsageIntake,
    keys_event,
    newest_credits,
    parse_usage,
    payments_event,
)
from tollgate_shared.contracts.topics import KEYS_EVENTS, LEDGER_BALANCES, PAYMENTS_EVENTS, USAGE_RECORDED
from tollgate_shared.usage_dedup import drop_republished

from . import recharge, repo
from .clients import Services


@dataclass(frozen=True)
class Deps:
    services: Services
    daily_cap: int


async def count_usage(_deps: Deps, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    await repo.add_usage(conn, await drop_republished(conn, usages))


async def watch_balances(deps: Deps, conn: asyncpg.Connection, balances: list[BalanceUpdated]) -> None:
    """A rule acts on the customer's balance as it is now."""
    for balance in newest_credits(balances):
        await recharge.on_balance(conn, deps.services, balance, deps.daily_cap)


async def learn_customers(_deps: Deps, conn: asyncpg.Connection, events: list[KeysEvent]) -> None:
    """Whoever bought a key (through the API, not the portal) may sign in with the
    address they paid with."""
    for event in events:
        if isinstance(event, KeyIssued) and event.customer_email:
            await repo.add_customer(conn, event.account_id, event.customer_email, event.customer_name or "")


async def watch_payments(_deps: Deps, conn: asyncpg.Connection, events: list[PaymentsEvent]) -> None:
    for event in events:
        if isinstance(event, TopUpFailed):
            await recharge.on_top_up_failed(conn, event)


SUBSCRIPTIONS = (
    Subscription(
        "usage",
        USAGE_RECORDED,
        parse_usage,
        count_usage,
        "Usage per key and hour for the customer's charts; re-published records are dropped by key_units_total.",
        max_records=BATCH_RECORDS,
    ),
    Subscription(
        "balances",
        LEDGER_BALANCES,
        BalanceUpdated.model_validate_json,
        watch_balances,
        "A customer's credits falling under their auto-recharge threshold charge their card, once per crossing.",
    ),
    Subscription(
        "keys",
        KEYS_EVENTS,
        keys_event.validate_json,
        learn_customers,
        "A buyer's address (from their key's event) is one they may sign in with.",
    ),
    Subscription(
        "payments",
        PAYMENTS_EVENTS,
        payments_event.validate_json,
        watch_payments,
        "An auto-recharge whose charge failed later pauses its rule.",
    ),
)
