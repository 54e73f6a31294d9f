"""usage-sync's HTTP edge: a customer's usage this period, and Stripe's upcoming invoice;
on the public listener for the customer (by one of their API keys), on the admin
listener for operators and Tollgate's own services."""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime

from . import repo

log = get_logger(__name__)
PREVIEW_TTL_S = 60.0  # Stripe is asked for a customer's upcoming invoice at most once a minute


class Period(BaseModel):
    start: datetime
    end: datetime


class MeterUsage(BaseModel):
    meter: str
    value: int
    windows: int
    windowsReported: int  # noqa: N815 - the wire name
    windowsFailed: int  # noqa: N815


class InvoiceLine(BaseModel):
    description: str | None
    quantity: int | None
    amount: int


class UpcomingInvoice(BaseModel):
    amountDue: int  # noqa: N815
    currency: str
    periodStart: int  # noqa: N815
    periodEnd: int  # noqa: N815
    lines: list[InvoiceLine]


class UsageView(BaseModel):
    customer: str
    period: Period
    meters: list[MeterUsage]
    upcomingInvoice: UpcomingInvoice | None  # noqa: N815


def month_of(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def router(runtime: Runtime, previews: "InvoicePreviews", guard: Callable[..., Any], tags: list[str]) -> APIRouter:
    r = APIRouter(dependencies=[Depends(guard)], tags=list(tags))

    @r.get("/v1/usage/{account_id}")
    async def usage(account_id: str) -> UsageView:
        """The account's usage this month, per meter and how much of it Stripe has, and
        Stripe's upcoming invoice (none without a subscription)."""
        start, end = month_of(datetime.now(UTC))
        async with runtime.pool.acquire() as conn:
            rows = await repo.usage_in(conn, start, end, account_id)
        return UsageView(
            customer=account_id,
            period=Period(start=start, end=end),
            meters=[
                MeterUsage(
                    meter=row["meter"],
                    value=row["value"],
                    windows=row["windows"],
                    windowsReported=row["confirmed"],
                    windowsFailed=row["failed"],
                )
                for row in rows
            ],
            upcomingInvoice=await previews.upcoming(account_id),
        )

    return r


class InvoicePreviews:
    """Stripe's upcoming invoice per customer, remembered for a minute: a customer
    refreshing a page costs one Stripe call a minute, not one per view."""

    def __init__(self, client: stripe.StripeClient, *, size: int = 10_000) -> None:
        self._client, self._size = client, size
        self._seen: dict[str, tuple[float, UpcomingInvoice | None]] = {}

    async def upcoming(self, customer: str) -> UpcomingInvoice | None:
        now = time.monotonic()
        if (hit := self._seen.get(customer)) is not None and now - hit[0] < PREVIEW_TTL_S:
            return hit[1]
        found = await self._fetch(customer)
        if len(self._seen) >= self._size:
            self._seen.clear()
        self._seen[customer] = (now, found)
        return found

    async def _fetch(self, customer: str) -> UpcomingInvoice | None:
        try:
            invoice = await self._client.v1.invoices.create_preview_async({"customer": customer})
        except stripe.StripeError as exc:
            # No subscription, or Stripe unavailable: the usage figures still stand on their own.
            log.info("no invoice preview", customer=customer, status=exc.http_status)
            return None
        return UpcomingInvoice(
            amountDue=invoice.amount_due,
            currency=invoice.currency,
            periodStart=invoice.period_start,
            periodEnd=invoice.period_end,
            lines=[
                InvoiceLine(description=line.description, quantity=line.quantity, amount=line.amount)
                for line in invoice.lines.data
            ],
        )
