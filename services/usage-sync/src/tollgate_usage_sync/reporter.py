"""Reporting closed windows to Stripe as Billing Meter events, exactly once in effect."""

import asyncio
import random

import asyncpg
import stripe

from tollgate_shared import outbox
from tollgate_shared.contracts import UsageReported
from tollgate_shared.contracts.envelope import event_id_for
from tollgate_shared.contracts.topics import USAGE_REPORTED
from tollgate_shared.faults import pause_point
from tollgate_shared.logging import get_logger

from . import metrics, repo
from .domain import Meter, Windows
from .ratelimit import TokenBucket

log = get_logger(__name__)


class Reporter:
    """Closes windows whose grace has passed and sends each as one meter event.

    States: open -> pending -> sent (leased, outcome unknown) -> confirmed | failed.
    A crash anywhere leaves either 'pending' or 'sent', and both are (re)sent with the
    same identifier, which Stripe deduplicates: one window, one billed value.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: stripe.StripeClient,
        meters: list[Meter],
        windows: Windows,
        bucket: TokenBucket,
        *,
        batch: int = 100,
        lease_s: float = 60.0,
        concurrency: int = 4,
    ) -> None:
        self._pool, self._client, self._windows, self._bucket = pool, client, windows, bucket
        self._meters = {m.name: m for m in meters}
        self._batch, self._lease_s = batch, lease_s
        self._lanes = asyncio.Semaphore(concurrency)

    async def tick(self) -> int:
        async with self._pool.acquire() as conn:
            await repo.close_due_windows(conn, self._windows.grace_seconds)
            rows = await repo.lease_due_reports(conn, self._batch, self._lease_s)
        # Stripe takes one meter event call at a time per customer and meter (a second
        # gets a 429), so each pair's windows go in order; pairs go side by side, up to
        # `concurrency` at once, so Stripe's latency does not cap the rate at 1/latency.
        lanes: dict[tuple[str, str], list[asyncpg.Record]] = {}
        for row in rows:
            lanes.setdefault((row["account_id"], row["meter"]), []).append(row)
        sent = await asyncio.gather(*(self._send_in_order(lane) for lane in lanes.values()), return_exceptions=True)
        for result in sent:
            if isinstance(result, BaseException):
                raise result
        return sum(sent)  # type: ignore[arg-type]

    async def _send_in_order(self, rows: list[asyncpg.Record]) -> int:
        async with self._lanes, self._pool.acquire() as conn:
            confirmed = 0
            for row in rows:
                await pause_point("reporter.before_send", row["account_id"])
                confirmed += await self._report(conn, row)
            return confirmed

    async def _report(self, conn: asyncpg.Connection, row: asyncpg.Record) -> int:
        meter = self._meters[row["meter"]]
        await self._bucket.take()
        try:
            await self._client.v1.billing.meter_events.create_async(
                {
                    "event_name": meter.stripe_event_name,
                    "identifier": row["identifier"],
                    # Inside the window, so Stripe bills it to the period the usage happened in.
                    "timestamp": int(row["window_start"].timestamp()),
                    "payload": {"stripe_customer_id": row["account_id"], "value": str(row["value"])},
                }
            )
        except stripe.StripeError as exc:
            await self._failed(conn, row, exc)
            return 0
        await pause_point("reporter.after_send", row["account_id"])
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
        metrics.REPORTS.labels(meter.name, "confirmed").inc()
        log.info("usage reported", identifier=row["identifier"], value=row["value"])
        return 1

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, exc: stripe.StripeError) -> None:
        status = exc.http_status or 0
        if status == 429 or status >= 500 or status == 0:
            # Exponential backoff with full jitter, capped at ten minutes.
            delay = random.uniform(0, min(600.0, 2.0 ** (row["attempts"] + 1)))
            await repo.mark(conn, row, "sent", error=str(exc)[:500], retry_in_s=delay)
            metrics.REPORTS.labels(row["meter"], "retrying").inc()
            log.warning("usage report will be retried", identifier=row["identifier"], status=status, delay_s=delay)
        else:
            await repo.mark(conn, row, "failed", error=f"HTTP {status}: {exc.user_message or exc}"[:500])
            metrics.REPORTS.labels(row["meter"], "failed").inc()
            log.error("usage report refused by Stripe", identifier=row["identifier"], status=status)
