"""Per customer and period: usage keys recorded, the ledger burned, usage-sync counted, Stripe has.

Healthy means: for prepaid usage, units recorded by keys = units burned by the ledger;
for each meter, units recorded by keys (as the meter counts them) = units aggregated by
usage-sync = units Stripe holds for the customer in that period. Every difference and
every failed report is listed. Periods should be whole windows; late usage counted in a
later window shows up as a difference at a period's edge, by design.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import stripe

from tollgate_shared.contracts import UsageIntake

from . import repo
from .domain import Meter


@dataclass(frozen=True)
class Difference:
    account_id: str
    what: str
    expected: int
    actual: int
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.account_id}\t{self.what}\texpected {self.expected}\tgot {self.actual}\t{self.detail}".rstrip()


def recorded_totals(
    usages: list[UsageIntake], meters: list[Meter], start: datetime, end: datetime
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Units keys recorded in [start, end): prepaid per account, and per (account, meter)."""
    seen: set[object] = set()
    prepaid: dict[str, int] = defaultdict(int)
    metered: dict[tuple[str, str], int] = defaultdict(int)
    members: dict[tuple[str, str], set[str]] = defaultdict(set)
    for u in usages:
        total = u.key_units_total
        identity = (u.key_id, total) if total is not None else u.event_id
        if identity in seen or not start <= u.occurred_at < end:
            continue
        seen.add(identity)
        if u.billing == "prepaid":
            prepaid[u.account_id] += u.units
        for m in meters:
            if m.matches(u):
                if m.counts_unique:
                    members[(u.account_id, m.name)].add(m.member_of(u))
                else:
                    metered[(u.account_id, m.name)] += m.value_of(u)
    for key, names in members.items():
        metered[key] += len(names)
    return dict(prepaid), dict(metered)


async def reconcile(
    *,
    usages: list[UsageIntake],
    pool: asyncpg.Pool,
    client: stripe.StripeClient,
    ledger: httpx.AsyncClient,
    meters: list[Meter],
    start: datetime,
    end: datetime,
    customer: str | None = None,
) -> list[Difference]:
    if customer is not None:
        usages = [u for u in usages if u.account_id == customer]
    prepaid, metered = recorded_totals(usages, meters, start, end)
    async with pool.acquire() as conn:
        rows = await repo.usage_in(conn, start, end, customer)
    aggregated = {(r["account_id"], r["meter"]): int(r["value"]) for r in rows}
    diffs = [
        Difference(r["account_id"], f"report failed ({r['meter']})", 0, int(r["failed"]), r["errors"] or "")
        for r in rows
        if r["failed"]
    ]
    async with ledger:
        for account, units in sorted(prepaid.items()):
            r = await ledger.get(
                f"/v1/accounts/{account}/usage", params={"from": start.isoformat(), "to": end.isoformat()}
            )
            if r.status_code != 200:
                raise SystemExit(f"the ledger answered {r.status_code} for {account}'s usage: {r.text[:200]}")
            burned = r.json()["units_burned"]
            if burned != units:
                diffs.append(Difference(account, "prepaid: keys recorded vs ledger burned", units, burned))
    meter_ids = {m.event_name: m.id for m in (await client.v1.billing.meters.list_async({"limit": 100})).data}
    by_name = {m.name: m for m in meters}
    for account, meter in sorted(set(metered) | set(aggregated)):
        recorded, counted = metered.get((account, meter), 0), aggregated.get((account, meter), 0)
        if recorded != counted:
            diffs.append(Difference(account, f"{meter}: keys recorded vs usage-sync aggregated", recorded, counted))
        at_stripe = await _stripe_total(client, meter_ids.get(by_name[meter].stripe_event_name), account, start, end)
        if counted != at_stripe:
            diffs.append(Difference(account, f"{meter}: usage-sync aggregated vs Stripe", counted, at_stripe))
    return diffs


async def _stripe_total(
    client: stripe.StripeClient, meter_id: str | None, account: str, start: datetime, end: datetime
) -> int:
    if meter_id is None:
        return 0
    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter_id, {"customer": account, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())}
    )
    return int(sum(s.aggregated_value for s in summaries.data))
