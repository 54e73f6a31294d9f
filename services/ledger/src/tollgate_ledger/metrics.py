"""What the ledger exports on /metrics beyond the shared outbox and consumer figures.

Read from the book itself after it committed, never counted while a transaction is
open: a figure finance reads must not include entries that were rolled back.
"""

import asyncpg
from prometheus_client import Gauge

from . import repo

JOURNAL_SEQ = Gauge(
    "tollgate_ledger_journal_seq",
    "Sequence number of the last committed journal transaction; its rate() is entries booked per second.",
)


async def refresh(conn: asyncpg.Connection) -> None:
    JOURNAL_SEQ.set(await repo.journal_seq(conn))
