"""Two-phase transfers on a Book: a hold counts in both accounts' pending columns until it
is posted (in full or in part, the rest released), voided, or expires.

These stage a change on the Book and say what to record once it is flushed; the use
case (handlers.py) flushes once, then records every hold it placed or resolved.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from . import repo
from .book import Book, Booked
from .domain import Entry, Posting, Rejected, hold_movements

Outcome = Literal["created", "exists"]


@dataclass(frozen=True)
class Transfer:
    id: str
    debit: str
    credit: str
    amount: int
    pending: bool = False
    timeout_s: float | None = None
    kind: str = "transfer"
    business_time: datetime | None = None
    source_ref: str | None = None


@dataclass(frozen=True)
class Resolution:
    """How a hold ended, to record once the Book is flushed."""

    hold_id: str
    state: Literal["posted", "voided", "expired"]
    amount: int
    entry: str | None  # the posting entry's idempotency key, if money moved

    def row(self, booked: dict[str, Booked], when: datetime) -> tuple[str, str, int, datetime, int | None]:
        return (self.hold_id, self.state, self.amount, when, booked[self.entry].tx_id if self.entry else None)


def stage_transfer(book: Book, t: Transfer, booked: set[str], holds: set[str]) -> Outcome:
    """One transfer: an entry (one phase) or a hold (two); refused if it breaks a rule."""
    if t.amount <= 0:
        raise Rejected("invalid_amount", "amount must be a positive integer")
    if t.debit == t.credit:
        raise Rejected("same_account", "debit and credit accounts must differ")
    for account_id in (t.debit, t.credit):
        if not book.has(account_id):
            raise Rejected("account_not_found", f"no account {account_id!r}")
    debit, credit = book.balance(t.debit), book.balance(t.credit)
    if debit.asset != credit.asset:
        raise Rejected("asset_mismatch", f"{t.debit} holds {debit.asset}, {t.credit} holds {credit.asset}")
    if t.pending:
        if t.id in holds:
            return "exists"
        book.move(hold_movements(t.debit, t.credit, t.amount))
        holds.add(t.id)
        return "created"
    key = f"transfer:{t.id}"
    if key in booked:
        return "exists"
    postings = (Posting(debit.account, t.amount), Posting(credit.account, -t.amount))
    book.post(Entry(key, t.kind, t.business_time or book.now, postings, t.source_ref))
    booked.add(key)
    return "created"


def hold_row(book: Book, t: Transfer) -> tuple[object, ...]:
    """The pending_transfers row of a hold placed now."""
    expires_at = book.now + timedelta(seconds=t.timeout_s) if t.timeout_s else None
    return (t.id, t.debit, t.credit, book.balance(t.debit).asset, t.amount, t.kind, t.source_ref, expires_at)


async def pending(book: Book, hold_id: str) -> asyncpg.Record:
    """The hold, locked, with its accounts in the Book."""
    row = await repo.hold_for_update(book.conn, hold_id)
    if row is None:
        raise Rejected("transfer_not_found", f"no pending transfer {hold_id!r}")
    await book.load_ids([row["debit_account"], row["credit_account"]])
    return row


def stage_post(
    book: Book, row: asyncpg.Record, amount: int | None, business_time: datetime | None = None
) -> Resolution | None:
    """Post a hold in full (amount None) or in part, releasing the rest; None if it was posted before."""
    hold_id = row["id"]
    if row["state"] == "posted":
        return None
    if row["state"] != "pending":
        raise Rejected(f"transfer_{row['state']}", f"transfer {hold_id!r} is {row['state']}")
    if row["expires_at"] is not None and row["expires_at"] <= book.now:
        raise Rejected("transfer_expired", f"transfer {hold_id!r} expired at {row['expires_at'].isoformat()}")
    held: int = row["amount"]
    amount = held if amount is None else amount
    if not 0 <= amount <= held:
        raise Rejected("invalid_amount", f"can post 0..{held}, not {amount}")
    debit, credit = book.balance(row["debit_account"]), book.balance(row["credit_account"])
    release = hold_movements(debit.account_id, credit.account_id, -held)
    if not amount:
        book.move(release)
        return Resolution(hold_id, "voided", 0, None)
    key = f"post:{hold_id}"
    postings = (Posting(debit.account, amount), Posting(credit.account, -amount))
    book.post(Entry(key, row["kind"], business_time or book.now, postings, row["source_ref"] or hold_id), release)
    return Resolution(hold_id, "posted", amount, key)


def stage_void(book: Book, row: asyncpg.Record, state: Literal["voided", "expired"] = "voided") -> Resolution | None:
    """Release a hold entirely; None if it was voided or expired before."""
    if row["state"] in ("voided", "expired"):
        return None
    if row["state"] != "pending":
        raise Rejected(f"transfer_{row['state']}", f"transfer {row['id']!r} is {row['state']}")
    book.move(hold_movements(row["debit_account"], row["credit_account"], -row["amount"]))
    return Resolution(row["id"], state, 0, None)
