"""Burning usage: a consumed batch of usage records becomes one entry per account and hour.

Aggregating per account keeps the hot revenue account to one row update per batch,
however many records it holds. A customer's credits never go below zero: usage beyond
them is booked as overdrawn (owed to us), so nothing used is ever unbooked.
"""

from collections import defaultdict
from datetime import datetime

from tollgate_shared.contracts import UsageIntake
from tollgate_shared.usage_dedup import drop_republished

from .book import Book
from .domain import CREDITS_CONSUMED, Entry, Posting, allocate, customer_credits, customer_overdrawn
from .grants import live_grants, take_from_grants

Group = tuple[str, datetime]  # account, hour


async def burn_usage(book: Book, usages: list[UsageIntake]) -> int:
    """Burn the prepaid records of a batch; returns how many were burned (after dedup)."""
    prepaid = [u for u in usages if u.billing == "prepaid"]
    if not prepaid:
        return 0
    fresh = await drop_republished(book.conn, prepaid)
    groups: dict[Group, list[UsageIntake]] = defaultdict(list)
    for u in fresh:
        groups[(u.account_id, u.occurred_at.replace(minute=0, second=0, microsecond=0))].append(u)
    keys = {g: f"usage:{records[0].event_id}:{len(records)}" for g, records in groups.items()}
    done = await book.booked(keys.values())  # whole groups delivered again by an old producer
    groups = {g: records for g, records in groups.items() if keys[g] not in done}
    accounts = sorted({account for account, _ in groups})
    await book.load(
        [CREDITS_CONSUMED, *(customer_credits(a) for a in accounts), *(customer_overdrawn(a) for a in accounts)]
    )
    grants = await live_grants(book, [customer_credits(a).id for a in accounts])
    taken: dict[str, int] = defaultdict(int)
    for (account, hour), records in sorted(groups.items()):
        credits, overdrawn = customer_credits(account), customer_overdrawn(account)
        units = sum(u.units for u in records)
        spendable = max(0, book.balance(credits.id).available)
        from_grants, _ = allocate(grants[credits.id], min(units, spendable), book.now)
        burned = sum(from_grants.values())
        for grant_id, n in from_grants.items():
            taken[grant_id] += n
        postings = [Posting(CREDITS_CONSUMED, -units)]
        if burned:
            postings.append(Posting(credits, burned))
        if units > burned:
            postings.append(Posting(overdrawn, units - burned))
        business_time = max(u.occurred_at for u in records)
        book.post(Entry(keys[(account, hour)], "usage", business_time, tuple(postings), records[0].event_id))
        book.count_usage(credits.id, units)
    await book.flush()
    await take_from_grants(book, taken)
    return len(fresh)
