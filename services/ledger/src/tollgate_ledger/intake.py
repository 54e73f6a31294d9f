"""Exactly-once intake from Kafka: each consumed batch is booked in the same PostgreSQL
transaction that stores its offsets (see tollgate_shared.tx_consumer)."""

from collections.abc import Sequence
from typing import Any

import asyncpg

from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    PaymentRefunded,
    PaymentsEvent,
    PaymentSucceeded,
    UsageIntake,
    parse_usage,
    payments_event,
)
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS, USAGE_RECORDED
from tollgate_shared.logging import get_logger
from tollgate_shared.tx_consumer import TransactionalConsumer

from .book import Book, Rejected
from .config import Settings
from .payments import close_dispute, credit_purchase, open_dispute, refund_payment
from .usage import burn_usage

log = get_logger(__name__)


async def book_payments(conn: asyncpg.Connection, events: Sequence[PaymentsEvent], threshold: int) -> None:
    book = await Book.open(conn, low_balance_threshold=threshold)
    for event in events:
        try:
            match event:
                case PaymentSucceeded():
                    await credit_purchase(book, event)
                case PaymentRefunded():
                    await refund_payment(book, event)
                case DisputeOpened():
                    await open_dispute(book, event)
                case DisputeClosed():
                    await close_dispute(book, event)
        except Rejected as exc:
            # A payment is a fact: the ledger cannot refuse it, only fail to book it. Say
            # so loudly; reconciliation against Stripe lists it as unmatched.
            log.error("payment fact not booked", event_id=str(event.event_id), reason=exc.reason, error=str(exc))


async def book_usage(conn: asyncpg.Connection, usages: list[UsageIntake], threshold: int) -> None:
    await burn_usage(await Book.open(conn, low_balance_threshold=threshold), usages)


def consumers(settings: Settings, pool: asyncpg.Pool) -> list[TransactionalConsumer[Any]]:
    threshold = settings.low_balance_threshold

    async def payments(conn: asyncpg.Connection, events: list[PaymentsEvent]) -> None:
        await book_payments(conn, events, threshold)

    async def usage(conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
        await book_usage(conn, usages, threshold)

    kafka = settings.kafka_bootstrap_servers
    return [
        TransactionalConsumer(
            bootstrap_servers=kafka,
            topic=PAYMENTS_EVENTS,
            group_id=f"{settings.group_id}.payments",
            pool=pool,
            parse=payments_event.validate_json,
            apply=payments,
        ),
        TransactionalConsumer(
            bootstrap_servers=kafka,
            topic=USAGE_RECORDED,
            group_id=f"{settings.group_id}.usage",
            pool=pool,
            parse=parse_usage,
            apply=usage,
            max_records=settings.usage_batch_max_records,
        ),
    ]
