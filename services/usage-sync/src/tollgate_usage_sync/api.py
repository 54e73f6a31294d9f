"""usage-sync's HTTP edge: a customer's usage this period, and Stripe's upcoming invoice."""

from datetime import UTC, datetime
from typing import Any

import stripe
from fastapi import APIRouter

from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime

from . import repo

log = get_logger(__name__)


def month_of(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def router(runtime: Runtime, client: stripe.StripeClient) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/usage/{customer}")
    async def usage(customer: str) -> dict[str, Any]:
        start, end = month_of(datetime.now(UTC))
        async with runtime.pool.acquire() as conn:
            rows = await repo.usage_in(conn, start, end, customer)
        return {
            "customer": customer,
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "meters": [
                {
                    "meter": row["meter"],
                    "value": row["value"],
                    "windows": row["windows"],
                    "windowsReported": row["confirmed"],
                    "windowsFailed": row["failed"],
                }
                for row in rows
            ],
            "upcomingInvoice": await upcoming_invoice(client, customer),
        }

    return r


async def upcoming_invoice(client: stripe.StripeClient, customer: str) -> dict[str, Any] | None:
    try:
        invoice = await client.v1.invoices.create_preview_async({"customer": customer})
    except stripe.StripeError as exc:
        # No subscription, or Stripe unavailable: the usage figures still stand on their own.
        log.info("no invoice preview", customer=customer, status=exc.http_status)
        return None
    return {
        "amountDue": invoice.amount_due,
        "currency": invoice.currency,
        "periodStart": invoice.period_start,
        "periodEnd": invoice.period_end,
        "lines": [
            {"description": line.description, "quantity": line.quantity, "amount": line.amount}
            for line in invoice.lines.data
        ],
    }
