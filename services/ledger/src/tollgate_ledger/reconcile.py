"""Reconciliation against Stripe: every payment, refund and dispute Stripe lists for a
period is matched to the ledger by reference, and every ledger entry to Stripe."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import stripe


@dataclass(frozen=True)
class Unmatched:
    what: str  # payment | refund | dispute
    reference: str  # PaymentIntent id, or dispute id
    stripe: str  # what Stripe says, or "-" when it has nothing
    ledger: str  # what the ledger says, or "-"

    def __str__(self) -> str:
        return f"{self.what:8} {self.reference:40} stripe={self.stripe:24} ledger={self.ledger}"


async def _listed(resource: Any, start: datetime, end: datetime) -> list[Any]:
    page = await resource.list_async(
        {"created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}, "limit": 100}
    )
    return [item async for item in page.auto_paging_iter()]


def _money(amount: int, currency: str) -> str:
    return f"{amount} {currency.upper()}/2"


def _compare(what: str, stripe_side: dict[str, str], ledger_side: dict[str, str]) -> list[Unmatched]:
    return [
        Unmatched(what, ref, stripe_side.get(ref, "-"), ledger_side.get(ref, "-"))
        for ref in sorted(set(stripe_side) | set(ledger_side))
        if stripe_side.get(ref) != ledger_side.get(ref)
    ]


async def reconcile(
    conn: asyncpg.Connection, client: stripe.StripeClient, start: datetime, end: datetime
) -> list[Unmatched]:
    v1 = client.v1
    payments = {
        pi.id: _money(pi.amount, pi.currency)
        for pi in await _listed(v1.payment_intents, start, end)
        if pi.status == "succeeded"
    }
    refunded: dict[str, list[Any]] = defaultdict(list)
    for refund in await _listed(v1.refunds, start, end):
        if refund.status == "succeeded":
            refunded[refund.payment_intent].append(refund)
    refunds = {pi: _money(sum(r.amount for r in rs), rs[0].currency) for pi, rs in refunded.items()}
    disputes = {d.id: _dispute_state(d.status) for d in await _listed(v1.disputes, start, end)}

    ledger_payments = await _ledger_money(conn, "purchase", "system:stripe_clearing:%", 1, start, end)
    ledger_refunds = await _ledger_money(conn, "refund", "system:stripe_clearing:%", -1, start, end)
    ledger_disputes = {
        r["id"].removeprefix("dispute:"): r["state"]
        for r in await conn.fetch(
            "SELECT id, state FROM pending_transfers WHERE kind = 'dispute' AND created_at >= $1 AND created_at < $2",
            start,
            end,
        )
    }
    return (
        _compare("payment", payments, ledger_payments)
        + _compare("refund", refunds, ledger_refunds)
        + _compare("dispute", disputes, ledger_disputes)
    )


def _dispute_state(status: str) -> str:
    """The ledger's hold state a Stripe dispute status should correspond to."""
    return {"won": "voided", "lost": "posted"}.get(status, "pending")


async def _ledger_money(
    conn: asyncpg.Connection, kind: str, account_like: str, sign: int, start: datetime, end: datetime
) -> dict[str, str]:
    """Money moved through Stripe clearing by entries of `kind`, per source reference."""
    rows = await conn.fetch(
        "SELECT t.source_ref, p.asset, sum(p.amount)::bigint AS amount FROM journal_transactions t "
        "JOIN postings p ON p.tx_id = t.id "
        "WHERE t.kind = $1 AND p.account_id LIKE $2 AND t.business_time >= $3 AND t.business_time < $4 "
        "GROUP BY t.source_ref, p.asset",
        kind,
        account_like,
        start,
        end,
    )
    return {r["source_ref"]: f"{sign * r['amount']} {r['asset']}" for r in rows}
