"""Transfers between accounts, in one phase or two.

A one-phase transfer is a journal entry of two postings. A two-phase transfer first
holds the amount (it counts in both accounts' pending columns), then is posted in full
or in part (the rest is released), voided, or expires by itself at its deadline.
The client's transfer id makes every call idempotent.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from tollgate_shared.logging import get_logger

from .book import Book, Rejected
from .domain import Entry, Posting, hold_movements

log = get_logger(__name__)
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


async def transfer_many(book: Book, transfers: list[Transfer]) -> list[Outcome | Rejected]:
    """Book many transfers in one Book: one outcome, or the refusal, per transfer."""
    await book.load_ids({t.debit for t in transfers} | {t.credit for t in transfers})
    booked = await book.booked(f"transfer:{t.id}" for t in transfers if not t.pending)
    pending = [t.id for t in transfers if t.pending]
    holds = (
        {r["id"] for r in await book.conn.fetch("SELECT id FROM pending_transfers WHERE id = ANY($1::text[])", pending)}
        if pending
        else set()
    )
    outcomes: list[Outcome | Rejected] = []
    for t in transfers:
        try:
            outcomes.append(_one(book, t, booked, holds))
        except Rejected as exc:
            outcomes.append(exc)
    await book.flush()
    await _insert_holds(book, [t for t, o in zip(transfers, outcomes, strict=True) if t.pending and o == "created"])
    return outcomes


def _one(book: Book, t: Transfer, booked: set[str], holds: set[str]) -> Outcome:
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
    when = t.business_time or book.now
    book.post(
        Entry(key, t.kind, when, (Posting(debit.account, t.amount), Posting(credit.account, -t.amount)), t.source_ref)
    )
    booked.add(key)
    return "created"


async def _insert_holds(book: Book, transfers: list[Transfer]) -> None:
    await book.conn.executemany(
        "INSERT INTO pending_transfers "
        "  (id, debit_account, credit_account, asset, amount, kind, source_ref, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (
                t.id,
                t.debit,
                t.credit,
                book.balance(t.debit).asset,
                t.amount,
                t.kind,
                t.source_ref,
                book.now + timedelta(seconds=t.timeout_s) if t.timeout_s else None,
            )
            for t in transfers
        ],
    )


async def hold(book: Book, t: Transfer) -> bool:
    """Place one hold, raising `Rejected` if refused; False if this hold id exists."""
    (outcome,) = await transfer_many(book, [replace(t, pending=True)])
    if isinstance(outcome, Rejected):
        raise outcome
    return outcome == "created"


async def _pending(book: Book, hold_id: str) -> asyncpg.Record:
    row = await book.conn.fetchrow("SELECT * FROM pending_transfers WHERE id = $1 FOR UPDATE", hold_id)
    if row is None:
        raise Rejected("transfer_not_found", f"no pending transfer {hold_id!r}")
    await book.load_ids([row["debit_account"], row["credit_account"]])
    return row


async def post_hold(book: Book, hold_id: str, amount: int | None, *, business_time: datetime | None = None) -> bool:
    """Post a hold in full (amount None) or in part, releasing the rest. False if already posted."""
    row = await _pending(book, hold_id)
    if row["state"] == "posted":
        return False
    if row["state"] != "pending":
        raise Rejected(f"transfer_{row['state']}", f"transfer {hold_id!r} is {row['state']}")
    expires_at = row["expires_at"]
    if expires_at is not None and expires_at <= book.now:
        raise Rejected("transfer_expired", f"transfer {hold_id!r} expired at {expires_at.isoformat()}")
    held: int = row["amount"]
    amount = held if amount is None else amount
    if not 0 <= amount <= held:
        raise Rejected("invalid_amount", f"can post 0..{held}, not {amount}")
    debit, credit = book.balance(row["debit_account"]), book.balance(row["credit_account"])
    release = hold_movements(debit.account_id, credit.account_id, -held)
    tx_id = None
    if amount == 0:
        book.move(release)
    else:
        key = f"post:{hold_id}"
        entry = Entry(
            key,
            row["kind"],
            business_time or book.now,
            (Posting(debit.account, amount), Posting(credit.account, -amount)),
            row["source_ref"] or hold_id,
        )
        book.post(entry, holds=release)
    booked = await book.flush()
    if amount:
        tx_id = booked[f"post:{hold_id}"].tx_id
    await book.conn.execute(
        "UPDATE pending_transfers SET state = $2, posted_amount = $3, resolved_at = $4, resolved_tx = $5 WHERE id = $1",
        hold_id,
        "posted" if amount else "voided",
        amount,
        book.now,
        tx_id,
    )
    return True


async def void_hold(book: Book, hold_id: str, *, state: str = "voided") -> bool:
    """Release a hold entirely. False if it was already voided or expired."""
    row = await _pending(book, hold_id)
    if row["state"] in ("voided", "expired"):
        return False
    if row["state"] != "pending":
        raise Rejected(f"transfer_{row['state']}", f"transfer {hold_id!r} is {row['state']}")
    book.move(hold_movements(row["debit_account"], row["credit_account"], -row["amount"]))
    await book.flush()
    await book.conn.execute(
        "UPDATE pending_transfers SET state = $2, resolved_at = $3 WHERE id = $1", hold_id, state, book.now
    )
    return True


async def expire_holds(book: Book) -> int:
    """Void every hold past its deadline; returns how many."""
    ids = [
        r["id"]
        for r in await book.conn.fetch(
            "SELECT id FROM pending_transfers WHERE state = 'pending' AND expires_at <= $1 ORDER BY id",
            book.now,
        )
    ]
    for hold_id in ids:
        await void_hold(book, hold_id, state="expired")
    if ids:
        log.info("holds expired", count=len(ids))
    return len(ids)
