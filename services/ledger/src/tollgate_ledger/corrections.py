"""Corrections: manual adjustments of a customer's credits, reversing entries, closing
accounts. The journal is never edited; a correction is an entry of its own."""

from .book import Book, Rejected
from .domain import ADJUSTMENTS, Entry, Posting, customer_credits
from .grants import add_grant, draw_from_grants

ADJUSTMENT_PRIORITY = 50  # between promotional (burned first) and paid credits
# Entries that also moved a sub-ledger (grants, holds, watermarks) are corrected by their
# own operation (a refund, an adjustment), not by a bare reversal of their postings.
REVERSIBLE = frozenset({"transfer", "manual_adjustment_transfer", "correction"})


async def adjust_credits(book: Book, adjustment_id: str, account_id: str, units: int, reason: str) -> bool:
    """Add (units > 0) or take away (units < 0) credits by hand, against the adjustments
    account. Taking away more than is available is refused."""
    if units == 0:
        raise Rejected("invalid_amount", "an adjustment moves a non-zero number of units")
    key = f"adjustment:{adjustment_id}"
    if await book.booked([key]):
        return False
    credits = customer_credits(account_id)
    await book.load([credits, ADJUSTMENTS])
    if units < 0:
        if book.balance(credits.id).available < -units:
            raise Rejected("overdraft", f"{account_id} has {book.balance(credits.id).available} credits available")
        await draw_from_grants(book, credits.id, -units)
    book.post(
        Entry(key, "manual_adjustment", book.now, (Posting(ADJUSTMENTS, units), Posting(credits, -units)), reason)
    )
    booked = await book.flush()
    if units > 0:
        await add_grant(book, key, account_id, "adjustment", ADJUSTMENT_PRIORITY, units, booked[key].tx_id)
    return True


async def reverse(book: Book, tx_id: int, reason: str) -> int:
    """Book the exact opposite of journal transaction `tx_id`; returns the new entry's id."""
    tx = await book.conn.fetchrow("SELECT id, kind, idempotency_key FROM journal_transactions WHERE id = $1", tx_id)
    if tx is None:
        raise Rejected("transaction_not_found", f"no journal transaction {tx_id}")
    if tx["kind"] not in REVERSIBLE:
        raise Rejected("not_reversible", f"a {tx['kind']} entry is corrected by its own operation, not a reversal")
    key = f"reverse:{tx_id}"
    existing = await book.conn.fetchval("SELECT id FROM journal_transactions WHERE idempotency_key = $1", key)
    if existing is not None:
        return int(existing)
    rows = await book.conn.fetch("SELECT account_id, amount FROM postings WHERE tx_id = $1 ORDER BY id", tx_id)
    await book.load_ids([r["account_id"] for r in rows])
    postings = tuple(Posting(book.balance(r["account_id"]).account, -r["amount"]) for r in rows)
    book.post(Entry(key, "reversal", book.now, postings, reason, reverses=tx_id))
    return (await book.flush())[key].tx_id


async def close_account(book: Book, account_id: str) -> None:
    """Close an account with nothing in it: from now on the database refuses any movement."""
    await book.load_ids([account_id])
    if not book.has(account_id):
        raise Rejected("account_not_found", f"no account {account_id!r}")
    b = book.balance(account_id)
    if b.current or b.debits_pending or b.credits_pending:
        raise Rejected("account_not_empty", f"{account_id} holds {b.current} and has pending holds")
    await book.conn.execute(
        "UPDATE accounts SET flags = array_append(flags, 'closed') WHERE id = $1 AND NOT 'closed' = ANY(flags)",
        account_id,
    )
    await book.conn.execute("UPDATE balances SET closed = true WHERE account_id = $1", account_id)
