"""The ledger's use cases. Each books one balanced entry in one transaction, once."""

from datetime import datetime

import asyncpg

from tollgate_shared import outbox
from tollgate_shared.contracts import BalanceUpdated, PaymentSucceeded, UsageRecorded, event_id_for
from tollgate_shared.contracts.topics import LEDGER_BALANCES
from tollgate_shared.logging import get_logger

from . import repo
from .domain import Balance, Posting, burn_postings, purchase_postings

log = get_logger(__name__)


async def credit_purchase(fact: PaymentSucceeded, pool: asyncpg.Pool) -> bool:
    postings = purchase_postings(fact.account_id, fact.credits, fact.amount.amount_minor, fact.amount.currency)
    # Keyed by the Checkout Session, not the Stripe event: one payment, one entry.
    return await _book(
        pool, f"purchase:{fact.checkout_session_id}", "purchase", fact.occurred_at, fact.checkout_session_id, postings
    )


async def burn_usage(usage: UsageRecorded, pool: asyncpg.Pool) -> bool:
    if usage.billing != "prepaid":
        return False  # metered usage is billed by Stripe, not burned from credits
    postings = burn_postings(usage.account_id, usage.units)
    return await _book(pool, f"usage:{usage.event_id}", "usage", usage.occurred_at, str(usage.key_id), postings)


async def _book(
    pool: asyncpg.Pool,
    idempotency_key: str,
    kind: str,
    business_time: datetime,
    source_ref: str | None,
    postings: list[Posting],
) -> bool:
    """Book postings under an idempotency key, update balances, publish the new balances."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.ensure_accounts(conn, sorted({p.account for p in postings}, key=lambda a: a.id))
        tx_id = await repo.insert_transaction(conn, idempotency_key, kind, business_time, source_ref)
        if tx_id is None:
            log.info("entry already booked", idempotency_key=idempotency_key)
            return False
        await repo.insert_postings(conn, tx_id, postings)
        for balance in await repo.apply_to_balances(conn, postings):
            if balance.account_id.startswith("customer:"):
                await outbox.add(conn, LEDGER_BALANCES, _owner(balance), balance_event(balance))
    log.info("entry booked", kind=kind, tx_id=tx_id, idempotency_key=idempotency_key)
    return True


def _owner(balance: Balance) -> str:
    return balance.account_id.split(":")[1]


def balance_event(balance: Balance) -> BalanceUpdated:
    return BalanceUpdated(
        event_id=event_id_for("BalanceUpdated", balance.account_id, str(balance.version)),
        account_id=balance.account_id,
        asset=balance.asset,
        current=balance.current,
        pending=balance.pending,
        available=balance.available,
        version=balance.version,
    )
