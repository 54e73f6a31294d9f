"""What the ledger consumes: payment facts and usage, each batch booked in one Book in the
consumer's transaction, with the batch's offsets."""

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from tollgate_shared.consumer import BATCH_RECORDS, Subscription
from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    PaymentRefunded,
    PaymentsEvent,
    PaymentSucceeded,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    UsageIntake,
    parse_usage,
    payments_event,
)
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS, USAGE_RECORDED
from tollgate_shared.logging import get_logger

from .book import Book
from .domain import Rejected
from .handlers import (
    burn_usage,
    close_dispute,
    credit_purchase,
    fail_top_up,
    hold_top_up,
    open_dispute,
    refund_payment,
    settle_top_up,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    low_balance_threshold: int
    paid_credits_valid_for: timedelta | None = None  # None: paid credits never expire


async def book_payments(deps: Deps, conn: asyncpg.Connection, events: list[PaymentsEvent]) -> None:
    book = await Book.open(conn, low_balance_threshold=deps.low_balance_threshold)
    for event in events:
        try:
            match event:
                case PaymentSucceeded():
                    await credit_purchase(book, event, deps.paid_credits_valid_for)
                case PaymentRefunded():
                    await refund_payment(book, event)
                case DisputeOpened():
                    await open_dispute(book, event)
                case DisputeClosed():
                    await close_dispute(book, event)
                case TopUpRequested():
                    await hold_top_up(book, event)
                case TopUpSucceeded():
                    await settle_top_up(book, event, deps.paid_credits_valid_for)
                case TopUpFailed():
                    await fail_top_up(book, event)
        except Rejected as exc:
            # A payment is a fact: the ledger cannot refuse it, only fail to book it. Say
            # so loudly; reconciliation against Stripe lists it as unmatched.
            book.discard()
            log.error("payment fact not booked", event_id=str(event.event_id), reason=exc.reason, error=str(exc))


async def book_usage(deps: Deps, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    await burn_usage(await Book.open(conn, low_balance_threshold=deps.low_balance_threshold), usages)


async def book_dead_lettered_usage(deps: Deps, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    """A usage record back from the DLQ was never burned, though later records of its key
    moved the watermark past it: burn it without the watermark (replay runs it once)."""
    book = await Book.open(conn, low_balance_threshold=deps.low_balance_threshold)
    await burn_usage(book, usages, dedup=False)


PAYMENTS = Subscription(
    "payments",
    PAYMENTS_EVENTS,
    payments_event.validate_json,
    book_payments,
    "Payments, top-ups, refunds and disputes become journal entries, each once: keyed by the Checkout "
    "Session, the top-up, the PaymentIntent's cumulative refund, or the dispute. A top-up's credits are "
    "pending until its charge settles.",
)
USAGE = Subscription(
    "usage",
    USAGE_RECORDED,
    parse_usage,
    book_usage,
    "Prepaid usage is burned from the customer's credits, one entry per account and hour per batch; "
    "re-published records are dropped by key_units_total.",
    max_records=BATCH_RECORDS,
    replay=book_dead_lettered_usage,
)
SUBSCRIPTIONS = (PAYMENTS, USAGE)
