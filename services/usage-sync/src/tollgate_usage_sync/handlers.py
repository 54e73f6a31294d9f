"""usage-sync's use cases: count usage into windows; report closed windows to Stripe once."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import stripe

from tollgate_shared import outbox
from tollgate_shared.contracts import UsageRecorded, UsageReported
from tollgate_shared.contracts.envelope import event_id_for, utcnow
from tollgate_shared.contracts.topics import USAGE_REPORTED
from tollgate_shared.db import first_time
from tollgate_shared.logging import get_logger

from . import repo
from .domain import Meter, report_identifier, window_start

log = get_logger(__name__)
CONSUMER = "usage-sync"


@dataclass(frozen=True)
class Windows:
    length: timedelta
    grace_seconds: int


async def aggregate_usage(usage: UsageRecorded, pool: asyncpg.Pool, meters: list[Meter], windows: Windows) -> bool:
    matching = [m for m in meters if m.matches(usage)]
    if not matching:
        return False
    async with pool.acquire() as conn, conn.transaction():
        if not await first_time(conn, CONSUMER, usage.event_id):
            return False
        for meter in matching:
            await _count(conn, usage, meter, windows)
    return True


async def _count(conn: asyncpg.Connection, usage: UsageRecorded, meter: Meter, windows: Windows) -> None:
    start = window_start(usage.occurred_at, windows.length)
    value = meter.value_of(usage)
    if await _add(conn, usage.account_id, meter, start, windows, value):
        return
    # Too late for its window (already reported): count it now rather than drop it.
    late_into = window_start(utcnow(), windows.length)
    log.warning(
        "late usage counted in the open window",
        meter=meter.name,
        window=start.isoformat(),
        counted_in=late_into.isoformat(),
        value=value,
    )
    if not await _add(conn, usage.account_id, meter, late_into, windows, value):
        raise RuntimeError("the current window is already closed; grace period shorter than clock skew?")


async def _add(
    conn: asyncpg.Connection, account_id: str, meter: Meter, start: datetime, windows: Windows, value: int
) -> bool:
    identifier = report_identifier(account_id, meter.name, start)
    return await repo.add_to_window(conn, account_id, meter.name, start, start + windows.length, value, identifier)


class Reporter:
    """Closes windows whose grace has passed and sends each to Stripe as one meter event."""

    def __init__(
        self, pool: asyncpg.Pool, client: stripe.StripeClient, meters: list[Meter], windows: Windows, batch: int = 100
    ) -> None:
        self._pool, self._client, self._windows, self._batch = pool, client, windows, batch
        self._meters = {m.name: m for m in meters}

    async def tick(self) -> int:
        async with self._pool.acquire() as conn:
            await repo.close_due_windows(conn, self._windows.grace_seconds)
        sent = 0
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                rows = await repo.due_reports(conn, self._batch)
                # 'sent' commits before the call: after a crash we know to re-send, and the
                # deterministic identifier makes the re-send a no-op at Stripe.
                for row in rows:
                    await conn.execute(
                        "UPDATE usage_windows SET state = 'sent' "
                        "WHERE account_id = $1 AND meter = $2 AND window_start = $3",
                        row["account_id"],
                        row["meter"],
                        row["window_start"],
                    )
            for row in rows:
                sent += await self._report(conn, row)
        return sent

    async def _report(self, conn: asyncpg.Connection, row: asyncpg.Record) -> int:
        meter = self._meters[row["meter"]]
        try:
            await self._client.v1.billing.meter_events.create_async(
                {
                    "event_name": meter.stripe_event_name,
                    "identifier": row["identifier"],
                    "timestamp": int(row["window_start"].timestamp()),
                    "payload": {"stripe_customer_id": row["account_id"], "value": str(row["value"])},
                }
            )
        except stripe.StripeError as exc:
            await self._failed(conn, row, exc)
            return 0
        async with conn.transaction():
            await repo.mark(conn, row, "confirmed")
            await outbox.add(
                conn,
                USAGE_REPORTED,
                row["account_id"],
                UsageReported(
                    event_id=event_id_for("UsageReported", row["identifier"]),
                    account_id=row["account_id"],
                    meter=meter.name,
                    stripe_event_name=meter.stripe_event_name,
                    window_start=row["window_start"],
                    window_end=row["window_end"],
                    value=row["value"],
                    identifier=row["identifier"],
                ),
            )
        log.info("usage reported", identifier=row["identifier"], value=row["value"])
        return 1

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, exc: stripe.StripeError) -> None:
        status = exc.http_status or 0
        if status == 429 or status >= 500 or status == 0:
            # Exponential backoff with full jitter, capped at ten minutes.
            delay = random.uniform(0, min(600.0, 2.0 ** (row["attempts"] + 1)))
            await repo.mark(conn, row, "sent", error=str(exc)[:500], retry_in_s=delay)
            log.warning("usage report will be retried", identifier=row["identifier"], status=status, delay_s=delay)
        else:
            await repo.mark(conn, row, "failed", error=str(exc)[:500])
            log.error("usage report refused by Stripe", identifier=row["identifier"], status=status)
