"""Credit grants: which grant each of a customer's credits came from, and when it ends.

A customer's credits live in one ledger account; grants are its sub-ledger. Paid packs,
promotions and manual adjustments each add a grant with a priority and an optional
expiry. Burns take from the lowest priority number first (promotional before paid),
then the soonest expiry; an expired grant's remainder leaves with an entry of its own.
"""

from datetime import datetime

from tollgate_shared.logging import get_logger

from .book import Book, Rejected
from .domain import (
    CREDITS_EXPIRED,
    PROMOTIONAL_PRIORITY,
    PROMOTIONS,
    Entry,
    Grant,
    Posting,
    allocate,
    customer_credits,
    customer_overdrawn,
)

log = get_logger(__name__)


async def add_grant(
    book: Book,
    grant_id: str,
    account_id: str,
    kind: str,
    priority: int,
    units: int,
    tx_id: int,
    *,
    expires_at: datetime | None = None,
    source_ref: str | None = None,
    paid_minor: int | None = None,
    currency: str | None = None,
) -> None:
    await book.conn.execute(
        "INSERT INTO credit_grants (id, account_id, kind, priority, granted, remaining, expires_at, source_ref, "
        "  paid_minor, currency, granted_tx) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10)",
        grant_id,
        customer_credits(account_id).id,
        kind,
        priority,
        units,
        expires_at,
        source_ref,
        paid_minor,
        currency,
        tx_id,
    )


async def settle_overdrawn(book: Book, account_id: str) -> int:
    """Pay usage booked beyond the customer's credits out of credits that arrived since.

    Usage and payments come on different topics, so usage can be booked before the
    purchase that covers it. Settling on every grant makes the final balances the same
    whatever order the two topics were read in. Returns the units settled.
    """
    credits, overdrawn = customer_credits(account_id), customer_overdrawn(account_id)
    await book.load([credits, overdrawn])
    owed, spendable = book.balance(overdrawn.id).current, book.balance(credits.id).available
    if owed <= 0 or spendable <= 0:
        return 0
    units = await draw_from_grants(book, credits.id, min(owed, spendable))
    if not units:
        return 0
    version = book.balance(overdrawn.id).version
    key = f"settle:{overdrawn.id}:{version}:{book.balance(credits.id).version}"
    book.post(Entry(key, "overdraft_settlement", book.now, (Posting(credits, units), Posting(overdrawn, -units))))
    await book.flush()
    return units


async def draw_from_grants(book: Book, credits_account: str, units: int) -> int:
    """Take up to `units` from the account's live grants in burn order; returns how many."""
    grants = await live_grants(book, [credits_account])
    taken, _ = allocate(grants[credits_account], units, book.now)
    await take_from_grants(book, taken)
    return sum(taken.values())


async def live_grants(book: Book, ledger_accounts: list[str]) -> dict[str, list[Grant]]:
    """The accounts' grants with credits left, locked for this Book."""
    rows = await book.conn.fetch(
        "SELECT id, account_id, priority, remaining, expires_at FROM credit_grants "
        "WHERE account_id = ANY($1::text[]) AND remaining > 0 ORDER BY id FOR UPDATE",
        ledger_accounts,
    )
    out: dict[str, list[Grant]] = {a: [] for a in ledger_accounts}
    for r in rows:
        out[r["account_id"]].append(Grant(r["id"], r["priority"], r["remaining"], r["expires_at"]))
    return out


async def take_from_grants(book: Book, taken: dict[str, int]) -> None:
    if taken:
        await book.conn.execute(
            "UPDATE credit_grants g SET remaining = g.remaining - t.units "
            "FROM unnest($1::text[], $2::bigint[]) AS t(id, units) WHERE g.id = t.id",
            list(taken),
            list(taken.values()),
        )


async def grant_promotional(
    book: Book, grant_id: str, account_id: str, units: int, *, expires_at: datetime | None, reason: str
) -> bool:
    """Free credits: a promotion is the seller's expense."""
    credits = customer_credits(account_id)
    key = f"grant:{grant_id}"
    if await book.booked([key]):
        return False
    await book.load([credits, PROMOTIONS])
    book.post(Entry(key, "promotional_grant", book.now, (Posting(PROMOTIONS, units), Posting(credits, -units)), reason))
    booked = await book.flush()
    await add_grant(
        book, grant_id, account_id, "promotional", PROMOTIONAL_PRIORITY, units, booked[key].tx_id, expires_at=expires_at
    )
    await settle_overdrawn(book, account_id)
    return True


async def expire_grants(book: Book) -> int:
    """Book the end of every grant whose time has come; returns how many ended."""
    rows = await book.conn.fetch(
        "SELECT id, account_id, remaining, expires_at FROM credit_grants "
        "WHERE remaining > 0 AND expires_at <= $1 ORDER BY id FOR UPDATE SKIP LOCKED",
        book.now,
    )
    if not rows:
        return 0
    await book.load_ids({r["account_id"] for r in rows})
    await book.load([CREDITS_EXPIRED])
    ended = []
    for r in rows:
        account = book.balance(r["account_id"])
        credits = customer_credits(account.owner)
        # A hold on the credits keeps what it holds; the rest of the grant expires.
        units = min(r["remaining"], account.available_conservative)
        if units <= 0:
            continue
        key = f"expiry:{r['id']}"
        try:
            book.post(
                Entry(
                    key,
                    "grant_expiry",
                    r["expires_at"],
                    (Posting(credits, units), Posting(CREDITS_EXPIRED, -units)),
                    r["id"],
                )
            )
        except Rejected as exc:
            log.warning("grant could not expire", grant=r["id"], reason=exc.reason)
            continue
        ended.append((r["id"], units, key))
    booked = await book.flush()
    await book.conn.executemany(
        "UPDATE credit_grants SET remaining = remaining - $2, expired_tx = $3 WHERE id = $1",
        [(grant_id, units, booked[key].tx_id) for grant_id, units, key in ended],
    )
    if ended:
        log.info("credit grants expired", count=len(ended), units=sum(u for _, u, _ in ended))
    return len(ended)
