"""The ledger's use cases: what a payment, a refund, a dispute, usage, a transfer, a grant
or a correction does to the book.

Each takes a Book (the unit of work of one transaction), posts all its entries, flushes
once, and then records what refers to the entries it booked: a grant and the entry that
granted it, a hold and the entry that posted it. Facts from Stripe are keyed by their
business object (Checkout Session, PaymentIntent and cumulative refund, dispute), never
by the Stripe event, since several events describe one fact.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from tollgate_shared.contracts import DisputeClosed, DisputeOpened, PaymentRefunded, PaymentSucceeded, UsageIntake
from tollgate_shared.logging import get_logger
from tollgate_shared.usage_dedup import drop_republished

from . import repo
from .book import Book
from .domain import (
    ADJUSTMENTS,
    CREDITS_CONSUMED,
    CREDITS_EXPIRED,
    CREDITS_ISSUED,
    PAID_PRIORITY,
    PROMOTIONAL_PRIORITY,
    PROMOTIONS,
    REFUNDED_USAGE,
    Account,
    Balance,
    Entry,
    Grant,
    Posting,
    Rejected,
    allocate,
    credits_revoked,
    customer_credits,
    customer_overdrawn,
    customer_prepaid,
    dispute_losses,
    hold_movements,
    refunds_paid,
    stripe_clearing,
)

log = get_logger(__name__)
ADJUSTMENT_PRIORITY = 50  # between promotional (burned first) and paid credits
# Entries that also moved a sub-ledger (grants, holds, watermarks) are corrected by their
# own operation (a refund, an adjustment), not by a bare reversal of their postings.
REVERSIBLE = frozenset({"transfer", "manual_adjustment_transfer", "correction"})
Outcome = Literal["created", "exists"]


# --- payments ------------------------------------------------------------------------------


async def credit_purchase(book: Book, fact: PaymentSucceeded) -> bool:
    """Money in at Stripe, owed back as service; the customer's credits grow by a paid
    grant, which first pays any usage booked beyond their credits."""
    key = f"purchase:{fact.checkout_session_id}"
    if await book.booked([key]):
        return False
    account, currency = fact.account_id, fact.amount.currency
    credits, prepaid, clearing = (
        customer_credits(account),
        customer_prepaid(account, currency),
        stripe_clearing(currency),
    )
    await book.load([credits, prepaid, clearing, CREDITS_ISSUED, customer_overdrawn(account)])
    postings = [Posting(CREDITS_ISSUED, fact.credits), Posting(credits, -fact.credits)]
    if fact.amount.amount_minor:
        postings += [Posting(clearing, fact.amount.amount_minor), Posting(prepaid, -fact.amount.amount_minor)]
    reference = fact.payment_intent_id or fact.checkout_session_id
    book.post(Entry(key, "purchase", fact.occurred_at, tuple(postings), reference))
    grant = Grant(key, PAID_PRIORITY, fact.credits, None)
    taken = await _settle_overdrawn(book, account, key, grant)
    booked = await book.flush()
    await repo.insert_grant(
        book.conn,
        repo.NewGrant(
            key, credits.id, "paid", PAID_PRIORITY, fact.credits, grant.remaining, booked[key].tx_id,
            source_ref=reference, paid_minor=fact.amount.amount_minor, currency=currency,
        ),
    )  # fmt: skip
    await repo.take_from_grants(book.conn, taken)
    return True


async def _settle_overdrawn(book: Book, account_id: str, cause: str, new: Grant) -> dict[str, int]:
    """Pay usage booked beyond the customer's credits out of credits that arrive now.

    Usage and payments come on different topics, so usage can be booked before the
    purchase that covers it; settling on every grant makes the final balances the same
    whatever order the two were read in. Posts the settlement; returns what it took
    from the customer's existing grants (`new` is taken from in place)."""
    credits, overdrawn = customer_credits(account_id), customer_overdrawn(account_id)
    owed, spendable = book.balance(overdrawn.id).current, book.balance(credits.id).available
    if owed <= 0 or spendable <= 0:
        return {}
    existing = (await repo.live_grants(book.conn, [credits.id]))[credits.id]
    taken, _ = allocate([*existing, new], min(owed, spendable), book.now)
    units = sum(taken.values())
    if units:
        postings = (Posting(credits, units), Posting(overdrawn, -units))
        book.post(Entry(f"settle:{cause}", "overdraft_settlement", book.now, postings))
    return {grant_id: n for grant_id, n in taken.items() if grant_id != new.id}


async def refund_payment(book: Book, fact: PaymentRefunded) -> bool:
    """Money back to the customer. The credits it paid for go too: the unused ones are
    reversed; any already used are booked explicitly as refunded usage."""
    refunded_total = fact.amount_refunded.amount_minor
    key = f"refund:{fact.payment_intent_id}:{refunded_total}"
    if await book.booked([key]):
        return False
    grant = await repo.paid_grant(book.conn, fact.payment_intent_id)
    already = grant["refunded_minor"] if grant else 0
    money = refunded_total - already
    if money <= 0:
        return False  # an older refund total, arriving late: nothing new
    currency = fact.amount_refunded.currency
    credits, prepaid = customer_credits(fact.account_id), customer_prepaid(fact.account_id, currency)
    clearing = stripe_clearing(currency)
    await book.load([credits, prepaid, clearing, CREDITS_ISSUED, REFUNDED_USAGE, refunds_paid(currency)])
    postings = [Posting(prepaid, money), Posting(clearing, -money)]
    if book.balance(prepaid.id).available < money:
        # Refunding more than the customer prepaid (e.g. a charge the ledger never saw).
        postings = [Posting(refunds_paid(currency), money), Posting(clearing, -money)]
    unused = used = 0
    if grant and grant["paid_minor"]:
        revoke = credits_revoked(grant["granted"], grant["paid_minor"], refunded_total, already)
        unused = min(revoke, grant["remaining"], book.balance(credits.id).available_conservative)
        used = revoke - unused
        if unused:
            postings += [Posting(credits, unused), Posting(CREDITS_ISSUED, -unused)]
        if used:
            postings += [Posting(REFUNDED_USAGE, used), Posting(CREDITS_ISSUED, -used)]
    reverses = grant["granted_tx"] if grant else None
    book.post(Entry(key, "refund", fact.occurred_at, tuple(postings), fact.payment_intent_id, reverses=reverses))
    await book.flush()
    if grant:
        await repo.record_refund(book.conn, grant["id"], unused, refunded_total)
    log.info("refund booked", payment_intent=fact.payment_intent_id, money=money, unused=unused, used=used)
    return True


def _dispute_hold(fact: DisputeOpened | DisputeClosed) -> "Transfer":
    currency = fact.amount.currency
    return Transfer(
        id=f"dispute:{fact.dispute_id}",
        debit=dispute_losses(currency).id,
        credit=stripe_clearing(currency).id,
        amount=fact.amount.amount_minor,
        pending=True,
        kind="dispute",
        source_ref=fact.payment_intent_id,
    )


async def open_dispute(book: Book, fact: DisputeOpened) -> bool:
    """The disputed money is held until the dispute closes."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    (outcome,) = await transfer_many(book, [_dispute_hold(fact)])
    if isinstance(outcome, Rejected):
        raise outcome
    return outcome == "created"


async def close_dispute(book: Book, fact: DisputeClosed) -> bool:
    """Lost: the held money is posted as a loss. Won: the hold is voided. A close whose
    opening never arrived is booked as if it had."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    spec = _dispute_hold(fact)
    if await repo.hold_for_update(book.conn, spec.id) is None:
        return await _dispute_opened_and_closed(book, spec, fact)
    if fact.outcome == "lost":
        return await post_hold(book, spec.id, None, business_time=fact.occurred_at)
    return await void_hold(book, spec.id)


async def _dispute_opened_and_closed(book: Book, spec: "Transfer", fact: DisputeClosed) -> bool:
    """A close whose opening never arrived: the hold is recorded as placed and resolved
    at once, so the book and the reconciliation read as if the opening had come first."""
    key, tx_id = f"post:{spec.id}", None
    if fact.outcome == "lost":
        debit, credit = book.balance(spec.debit), book.balance(spec.credit)
        postings = (Posting(debit.account, spec.amount), Posting(credit.account, -spec.amount))
        book.post(Entry(key, spec.kind, fact.occurred_at, postings, spec.source_ref))
    booked = await book.flush()
    if fact.outcome == "lost":
        tx_id = booked[key].tx_id
    await repo.insert_holds(book.conn, [_hold_row(book, spec)])
    state, posted = ("posted", spec.amount) if fact.outcome == "lost" else ("voided", 0)
    await repo.resolve_holds(book.conn, [(spec.id, state, posted, book.now, tx_id)])
    return True


# --- usage ---------------------------------------------------------------------------------


async def burn_usage(book: Book, usages: list[UsageIntake]) -> int:
    """Burn a batch's prepaid usage, one entry per account and hour, so the hot revenue
    account takes one row update per batch however many records it holds. A customer's
    credits never go below zero: usage beyond them is booked as overdrawn (owed to us),
    so nothing used is ever unbooked. Returns how many records burned (after dedup)."""
    prepaid = [u for u in usages if u.billing == "prepaid"]
    if not prepaid:
        return 0
    fresh = await drop_republished(book.conn, prepaid)
    groups: dict[tuple[str, datetime], list[UsageIntake]] = defaultdict(list)
    for u in fresh:
        groups[(u.account_id, u.occurred_at.replace(minute=0, second=0, microsecond=0))].append(u)
    keys = {g: f"usage:{records[0].event_id}:{len(records)}" for g, records in groups.items()}
    done = await book.booked(keys.values())  # whole groups delivered again by an old producer
    groups = {g: records for g, records in groups.items() if keys[g] not in done}
    accounts = sorted({account for account, _ in groups})
    await book.load(
        [CREDITS_CONSUMED, *(customer_credits(a) for a in accounts), *(customer_overdrawn(a) for a in accounts)]
    )
    grants = await repo.live_grants(book.conn, [customer_credits(a).id for a in accounts])
    taken: dict[str, int] = defaultdict(int)
    for (account, hour), records in sorted(groups.items()):
        credits, overdrawn = customer_credits(account), customer_overdrawn(account)
        units = sum(u.units for u in records)
        from_grants, _ = allocate(grants[credits.id], min(units, max(0, book.balance(credits.id).available)), book.now)
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
    await repo.take_from_grants(book.conn, taken)
    return len(fresh)


# --- transfers -----------------------------------------------------------------------------


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
    """Book transfers in one phase (an entry) or place holds (two-phase): one outcome, or
    the refusal, per transfer; a refused transfer refuses only itself."""
    await book.load_ids({t.debit for t in transfers} | {t.credit for t in transfers})
    booked = await book.booked(f"transfer:{t.id}" for t in transfers if not t.pending)
    holds = await repo.existing_holds(book.conn, [t.id for t in transfers if t.pending])
    outcomes: list[Outcome | Rejected] = []
    for t in transfers:
        try:
            outcomes.append(_transfer(book, t, booked, holds))
        except Rejected as exc:
            outcomes.append(exc)
    await book.flush()
    placed = [t for t, o in zip(transfers, outcomes, strict=True) if t.pending and o == "created"]
    await repo.insert_holds(book.conn, [_hold_row(book, t) for t in placed])
    return outcomes


def _transfer(book: Book, t: Transfer, booked: set[str], holds: set[str]) -> Outcome:
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


def _hold_row(book: Book, t: Transfer) -> tuple[object, ...]:
    expires_at = book.now + timedelta(seconds=t.timeout_s) if t.timeout_s else None
    return (t.id, t.debit, t.credit, book.balance(t.debit).asset, t.amount, t.kind, t.source_ref, expires_at)


async def post_hold(book: Book, hold_id: str, amount: int | None, *, business_time: datetime | None = None) -> bool:
    """Post a hold in full (amount None) or in part, releasing the rest. False if already posted."""
    row = await _pending(book, hold_id)
    if row["state"] == "posted":
        return False
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
    key = f"post:{hold_id}"
    if amount:
        postings = (Posting(debit.account, amount), Posting(credit.account, -amount))
        book.post(Entry(key, row["kind"], business_time or book.now, postings, row["source_ref"] or hold_id), release)
    else:
        book.move(release)
    booked = await book.flush()
    tx_id = booked[key].tx_id if amount else None
    state = "posted" if amount else "voided"
    await repo.resolve_holds(book.conn, [(hold_id, state, amount, book.now, tx_id)])
    return True


async def void_hold(book: Book, hold_id: str) -> bool:
    """Release a hold entirely. False if it was already voided or expired."""
    row = await _pending(book, hold_id)
    if row["state"] in ("voided", "expired"):
        return False
    if row["state"] != "pending":
        raise Rejected(f"transfer_{row['state']}", f"transfer {hold_id!r} is {row['state']}")
    book.move(hold_movements(row["debit_account"], row["credit_account"], -row["amount"]))
    await book.flush()
    await repo.resolve_holds(book.conn, [(hold_id, "voided", 0, book.now, None)])
    return True


async def _pending(book: Book, hold_id: str) -> asyncpg.Record:
    row = await repo.hold_for_update(book.conn, hold_id)
    if row is None:
        raise Rejected("transfer_not_found", f"no pending transfer {hold_id!r}")
    await book.load_ids([row["debit_account"], row["credit_account"]])
    return row


# --- what ends on its own ------------------------------------------------------------------


async def expire_what_is_due(book: Book) -> tuple[int, int]:
    """Release every hold past its deadline and book the end of every credit grant whose
    time has come; returns how many of each."""
    holds = await repo.due_holds(book.conn, book.now)
    await book.load_ids({r["debit_account"] for r in holds} | {r["credit_account"] for r in holds})
    for r in holds:
        book.move(hold_movements(r["debit_account"], r["credit_account"], -r["amount"]))
    grants = await repo.due_grants(book.conn, book.now)
    await book.load_ids({r["account_id"] for r in grants})
    await book.load([CREDITS_EXPIRED])
    ended = [(r["id"], units, f"expiry:{r['id']}") for r in grants if (units := _expire(book, r))]
    booked = await book.flush()
    await repo.resolve_holds(book.conn, [(r["id"], "expired", 0, book.now, None) for r in holds])
    await repo.record_expiries(book.conn, [(grant, units, booked[key].tx_id) for grant, units, key in ended])
    if holds or ended:
        log.info("expired", holds=len(holds), grants=len(ended), units=sum(u for _, u, _ in ended))
    return len(holds), len(ended)


def _expire(book: Book, grant: asyncpg.Record) -> int:
    """Post the end of one grant; returns the units it took (0 if none could go)."""
    account = book.balance(grant["account_id"])
    # A hold on the credits keeps what it holds; the rest of the grant expires.
    units = min(grant["remaining"], account.available_conservative)
    if units <= 0:
        return 0
    postings = (Posting(customer_credits(account.owner), units), Posting(CREDITS_EXPIRED, -units))
    try:
        book.post(Entry(f"expiry:{grant['id']}", "grant_expiry", grant["expires_at"], postings, grant["id"]))
    except Rejected as exc:
        log.warning("grant could not expire", grant=grant["id"], reason=exc.reason)
        return 0
    return int(units)


# --- grants and corrections ----------------------------------------------------------------


async def grant_promotional(
    book: Book, grant_id: str, account_id: str, units: int, *, expires_at: datetime | None, reason: str
) -> bool:
    """Free credits, burned before paid ones: a promotion is the seller's expense."""
    key = f"grant:{grant_id}"
    if await book.booked([key]):
        return False
    credits = customer_credits(account_id)
    await book.load([credits, PROMOTIONS, customer_overdrawn(account_id)])
    book.post(Entry(key, "promotional_grant", book.now, (Posting(PROMOTIONS, units), Posting(credits, -units)), reason))
    grant = Grant(grant_id, PROMOTIONAL_PRIORITY, units, expires_at)
    taken = await _settle_overdrawn(book, account_id, key, grant)
    booked = await book.flush()
    new = repo.NewGrant(
        grant_id, credits.id, "promotional", PROMOTIONAL_PRIORITY, units, grant.remaining, booked[key].tx_id,
        expires_at=expires_at,
    )  # fmt: skip
    await repo.insert_grant(book.conn, new)
    await repo.take_from_grants(book.conn, taken)
    return True


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
    if units < 0 and book.balance(credits.id).available < -units:
        raise Rejected("overdraft", f"{account_id} has {book.balance(credits.id).available} credits available")
    taken: dict[str, int] = {}
    if units < 0:
        taken, _ = allocate((await repo.live_grants(book.conn, [credits.id]))[credits.id], -units, book.now)
    postings = (Posting(ADJUSTMENTS, units), Posting(credits, -units))
    book.post(Entry(key, "manual_adjustment", book.now, postings, reason))
    booked = await book.flush()
    await repo.take_from_grants(book.conn, taken)
    if units > 0:
        new = repo.NewGrant(key, credits.id, "adjustment", ADJUSTMENT_PRIORITY, units, units, booked[key].tx_id)
        await repo.insert_grant(book.conn, new)
    return True


async def reverse(book: Book, tx_id: int, reason: str) -> int:
    """Book the exact opposite of journal transaction `tx_id`; returns the new entry's id."""
    tx = await repo.journal_entry(book.conn, tx_id)
    if tx is None:
        raise Rejected("transaction_not_found", f"no journal transaction {tx_id}")
    if tx["kind"] not in REVERSIBLE:
        raise Rejected("not_reversible", f"a {tx['kind']} entry is corrected by its own operation, not a reversal")
    key = f"reverse:{tx_id}"
    if (existing := await repo.tx_of(book.conn, key)) is not None:
        return existing
    rows = await repo.postings_of(book.conn, tx_id)
    await book.load_ids([r["account_id"] for r in rows])
    postings = tuple(Posting(book.balance(r["account_id"]).account, -r["amount"]) for r in rows)
    book.post(Entry(key, "reversal", book.now, postings, reason, reverses=tx_id))
    return (await book.flush())[key].tx_id


async def open_account(book: Book, account: Account, low_balance_threshold: int | None) -> tuple[Balance, bool]:
    """Open an account (or find it open); True if it is new."""
    existed = await repo.account_exists(book.conn, account.id)
    await book.load([account])
    if low_balance_threshold is not None and not existed:
        await repo.set_low_balance_threshold(book.conn, account.id, low_balance_threshold)
    return book.balance(account.id), not existed


async def close_account(book: Book, account_id: str) -> None:
    """Close an account with nothing in it: from now on the database refuses any movement."""
    await book.load_ids([account_id])
    if not book.has(account_id):
        raise Rejected("account_not_found", f"no account {account_id!r}")
    b = book.balance(account_id)
    if b.current or b.debits_pending or b.credits_pending:
        raise Rejected("account_not_empty", f"{account_id} holds {b.current} and has pending holds")
    await repo.mark_closed(book.conn, account_id)
