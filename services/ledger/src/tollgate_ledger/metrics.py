"""What the ledger exports on /metrics beyond the shared outbox and consumer figures.

Read from the book itself after it committed, never counted while a transaction is
open: a figure finance reads must not include entries that were rolled back.
"""

import asyncpg
from prometheus_client import Gauge, Histogram

from . import repo

JOURNAL_SEQ = Gauge(
    "tollgate_ledger_journal_seq",
    "Sequence number of the last committed journal transaction; its rate() is entries booked per second.",
)


async def refresh(conn: asyncpg.Connection) -> None:
    JOURNAL_SEQ.set(await repo.journal_seq(conn))


# Operational, not financial: how the HTTP transfers were grouped (coalescer.py).
MOVES_PER_COMMIT = Histogram(
    "tollgate_ledger_moves_per_commit",
    "Transfers, posts and voids through HTTP committed together in one Book.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
