"""The ledger's use cases: what a payment, a refund, a dispute, usage, a transfer, a grant
or a correction does to the book.

Each takes a Book (the unit of work of one transaction), posts all its entries, flushes
once, and then records what refers to the entries it booked: a grant and the entry that
granted it, a hold and the entry that posted it. Facts from Stripe are keyed by their
business object (Checkout Session, PaymentIntent and cumulative refund, dispute), never
by the Stripe event, since several events describe one fact.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    Event,
    Money,
    PaymentRefunded,
    PaymentSucceeded,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    UsageIntake,
)
from tollgate_shared.logging import get_logger
from tollgate_shared.usage_dedup import drop_republished

from . import repo
from .book import Book
from .domain import (
    ADJUSTMENTS,
    CREDITS_CONSUMED,
    CREDITS_EXPIRED,
    CREDITS_ISSUED,
    DISPUTED_USAGE,
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
    refunds_paid,
    revenue_from_expiry,
    revenue_from_usage,
    stripe_clearing,
)
from .holds import Outcome, Resolution, Transfer, hold_row, pending, stage_post, stage_transfer, stage_void
from .recognition import Recognition, Terms

log = get_logger(__name__)
ADJUSTMENT_PRIORITY = 50  # between promotional (burned first) and paid credits
# Entries that also moved a sub-ledger (grants, holds, watermarks) are corrected by their
# own operation (a refund, an adjustment), not by a bare reversal of their postings.
REVERSIBLE = frozenset({"transfer", "manual_adjustment_transfer", "correction"})


# --- payments ------------------------------------------------------------------------------


async def credit_purchase(book: Book, fact: PaymentSucceeded, valid_for: timedelta | None = None) -> bool:
    """Money in at Stripe, owed back as service; the customer's credits grow by a paid
    grant (ending `valid_for` after the payment, if paid credits expire), which first
    pays any usage booked beyond their credits."""
    key = f"purchase:{fact.checkout_session_id}"
    if await book.booked([key]):
        return False
    reference = fact.payment_intent_id or fact.checkout_session_id
    await _book_paid_credits(
        book, key, "purchase", fact.account_id, fact.credits, fact.amount, reference, fact, valid_for=valid_for
    )
    return True


async def _book_paid_credits(
    book: Book,
    key: str,
    kind: str,
    account: str,
    credits_bought: int,
    amount: Money,
    reference: str,
    fact: Event,
    *,
    credits_posted: bool = False,
    valid_for: timedelta | None = None,
) -> None:
    """Money in at Stripe, owed back as service, and a paid grant of the credits it bought
    (`credits_posted`: a top-up's hold already posted them; only the money is booked)."""
    currency = amount.currency
    credits, prepaid, clearing = (
        customer_credits(account),
        customer_prepaid(account, currency),
        stripe_clearing(currency),
    )
    await book.load([credits, prepaid, clearing, CREDITS_ISSUED, customer_overdrawn(account)])
    postings = [] if credits_posted else [Posting(CREDITS_ISSUED, credits_bought), Posting(credits, -credits_bought)]
    if amount.amount_minor:
        postings += [Posting(clearing, amount.amount_minor), Posting(prepaid, -amount.amount_minor)]
    book.post(Entry(key, kind, fact.occurred_at, tuple(postings), reference))
    expires_at = fact.occurred_at + valid_for if valid_for else None
    grant = Grant(key, PAID_PRIORITY, credits_bought, expires_at)
    terms = Terms(key, amount.amount_minor, credits_bought, currency, credits_bought) if amount.amount_minor else None
    taken, recognised = await _settle_overdrawn(book, account, key, grant, terms)
    booked = await book.flush()
    await repo.insert_grant(
        book.conn,
        repo.NewGrant(
            key, credits.id, "paid", PAID_PRIORITY, credits_bought, grant.remaining, booked[key].tx_id,
            source_ref=reference, paid_minor=amount.amount_minor, currency=currency, expires_at=expires_at,
        ),
    )  # fmt: skip
    await repo.take_from_grants(book.conn, taken)
    await repo.record_recognition(book.conn, recognised)


TOP_UP_HOLD_S = 7 * 24 * 3600  # a charge Stripe never answers for is given up after a week


async def hold_top_up(book: Book, fact: TopUpRequested) -> bool:
    """The credits of a top-up being charged, pending: `available` moves now, `current`
    when the charge succeeds."""
    credits = customer_credits(fact.account_id)
    await book.load([credits, CREDITS_ISSUED])
    hold = Transfer(
        f"top-up:{fact.top_up_id}",
        CREDITS_ISSUED.id,
        credits.id,
        fact.credits,
        pending=True,
        timeout_s=TOP_UP_HOLD_S,
        kind="top_up",
        source_ref=fact.top_up_id,
    )
    (outcome,) = await transfer_many(book, [hold])
    if isinstance(outcome, Rejected):
        raise outcome
    return outcome == "created"


async def settle_top_up(book: Book, fact: TopUpSucceeded, valid_for: timedelta | None = None) -> bool:
    """A top-up paid: its pending credits posted (or, paid outside Tollgate, credited at
    once), the money booked, and a paid grant like a pack's."""
    key = f"top-up-paid:{fact.top_up_id}"
    if await book.booked([key]):
        return False
    hold_id = f"top-up:{fact.top_up_id}"
    held = bool(await repo.existing_holds(book.conn, [hold_id]))
    if held:
        await book.load([customer_credits(fact.account_id), CREDITS_ISSUED])
        await post_hold(book, hold_id, None)
    await _book_paid_credits(
        book, key, "top_up", fact.account_id, fact.credits, fact.amount, fact.payment_intent_id, fact,
        credits_posted=held, valid_for=valid_for,
    )  # fmt: skip
    return True


async def fail_top_up(book: Book, fact: TopUpFailed) -> bool:
    """A top-up's charge failed: its pending credits are released."""
    hold_id = f"top-up:{fact.top_up_id}"
    if not await repo.existing_holds(book.conn, [hold_id]):
        return False
    await book.load([customer_credits(fact.account_id), CREDITS_ISSUED])
    return await void_hold(book, hold_id)


async def _settle_overdrawn(
    book: Book, account_id: str, cause: str, new: Grant, new_terms: Terms | None = None
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Pay usage booked beyond the customer's credits out of credits that arrive now, and
    recognise the money of the paid credits that pay it.

    Usage and payments come on different topics, so usage can be booked before the
    purchase that covers it; settling on every grant makes the final balances the same
    whatever order the two were read in. Posts the settlement; returns what it took
    from the customer's existing grants (`new` is taken from in place) and what each
    paid grant recognised."""
    credits, overdrawn = customer_credits(account_id), customer_overdrawn(account_id)
    owed, spendable = book.balance(overdrawn.id).current, book.balance(credits.id).available
    if owed <= 0 or spendable <= 0:
        return {}, {}
    existing = (await repo.live_grants(book.conn, [credits.id]))[credits.id]
    taken, _ = allocate([*existing, new], min(owed, spendable), book.now)
    units = sum(taken.values())
    if not units:
        return {}, {}
    recognition = await _recognition(book, {account_id: list(taken)}, revenue_from_usage, new_terms)
    postings = (
        Posting(credits, units),
        Posting(overdrawn, -units),
        *recognition.postings(account_id, taken, revenue_from_usage),
    )
    book.post(Entry(f"settle:{cause}", "overdraft_settlement", book.now, postings))
    return {grant_id: n for grant_id, n in taken.items() if grant_id != new.id}, recognition.done


async def _recognition(
    book: Book, grants: dict[str, list[str]], revenue: Callable[[str], Account], new: Terms | None = None
) -> Recognition:
    """The terms of the paid grants among `grants` (customer account -> grant ids), and
    `new` (a grant booked in this Book); loads the prepaid and revenue accounts they move."""
    terms = await repo.paid_terms(book.conn, [g for ids in grants.values() for g in ids])
    if new is not None:
        terms[new.grant_id] = new
    currency = {t.grant_id: t.currency for t in terms.values()}
    owned = {(account, currency[g]) for account, ids in grants.items() for g in ids if g in currency}
    await book.load(
        [*(customer_prepaid(a, c) for a, c in sorted(owned)), *(revenue(c) for c in sorted(set(currency.values())))]
    )
    return Recognition.of(terms)


async def refund_payment(book: Book, fact: PaymentRefunded) -> bool:
    """Money back to the customer, and the refunded share of the credits it paid for:
    unused ones reversed, any already used booked explicitly as refunded usage."""
    refunded_total = fact.amount_refunded.amount_minor
    key = f"refund:{fact.payment_intent_id}:{refunded_total}"
    if await book.booked([key]):
        return False
    grant = await repo.paid_grant(book.conn, fact.payment_intent_id)
    money = refunded_total - (grant["refunded_minor"] if grant else 0)
    if money <= 0:
        return False  # an older refund total, arriving late: nothing new
    currency = fact.amount_refunded.currency
    prepaid, clearing = customer_prepaid(fact.account_id, currency), stripe_clearing(currency)
    await book.load([prepaid, clearing, refunds_paid(currency)])
    # What the pack's money still deferred covers comes out of prepaid; the rest paid for
    # credits already used (revenue recognised), or for a charge the ledger never saw.
    from_prepaid = _from_prepaid(book, prepaid, grant, money)
    postings = [Posting(clearing, -money)]
    if from_prepaid:
        postings.append(Posting(prepaid, from_prepaid))
    if money > from_prepaid:
        postings.append(Posting(refunds_paid(currency), money - from_prepaid))
    back = await _credits_back(book, fact.account_id, grant, money, REFUNDED_USAGE)
    reverses = grant["granted_tx"] if grant else None
    entry = Entry(key, "refund", fact.occurred_at, (*postings, *back.postings), fact.payment_intent_id, reverses)
    book.post(entry)
    await book.flush()
    if grant:
        await repo.record_return(book.conn, grant["id"], back.unused, refunded=money, from_prepaid=from_prepaid)
    log.info("refund booked", payment_intent=fact.payment_intent_id, money=money, unused=back.unused, used=back.used)
    return True


def _from_prepaid(book: Book, prepaid: Account, grant: asyncpg.Record | None, money: int) -> int:
    """How much of `money` returned to the customer comes out of the paid grant's money
    still deferred (none for a charge the ledger never granted anything for)."""
    if grant is None:
        return 0
    return max(0, min(money, int(grant["prepaid_left"]), book.balance(prepaid.id).available))


@dataclass(frozen=True)
class CreditsBack:
    postings: tuple[Posting, ...]
    unused: int
    used: int


async def _credits_back(
    book: Book, account_id: str, grant: asyncpg.Record | None, money: int, used_account: Account
) -> CreditsBack:
    """The share of a paid grant's credits that `money` more returned to the customer
    takes back: unused credits return to issuance; those already used are booked on
    `used_account` (refunded or disputed usage), so nothing used is unbooked."""
    if grant is None or not grant["paid_minor"]:
        return CreditsBack((), 0, 0)
    credits = customer_credits(account_id)
    await book.load([credits, CREDITS_ISSUED, used_account])
    before = grant["refunded_minor"] + grant["disputed_minor"]
    revoke = credits_revoked(grant["granted"], grant["paid_minor"], before + money, before)
    unused = min(revoke, grant["remaining"], book.balance(credits.id).available_conservative)
    used = revoke - unused
    postings: list[Posting] = []
    if unused:
        postings += [Posting(credits, unused), Posting(CREDITS_ISSUED, -unused)]
    if used:
        postings += [Posting(used_account, used), Posting(CREDITS_ISSUED, -used)]
    return CreditsBack(tuple(postings), unused, used)


def _dispute_hold(fact: DisputeOpened | DisputeClosed) -> Transfer:
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
    """The disputed money is held until the dispute closes (an inquiry's too)."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    (outcome,) = await transfer_many(book, [_dispute_hold(fact)])
    if isinstance(outcome, Rejected):
        raise outcome
    return outcome == "created"


async def close_dispute(book: Book, fact: DisputeClosed) -> bool:
    """Won, or an inquiry closed: the hold is released. Lost: the held money is posted as
    a loss, and the disputed pack's credits go as a refund's would. A close whose opening
    never arrived is booked as if it had."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    spec = _dispute_hold(fact)
    row = await repo.hold_for_update(book.conn, spec.id)
    lost = fact.outcome == "lost"
    if row is None:
        placed, resolution = hold_row(book, spec), _post_unheld(book, spec, fact) if lost else None
    else:
        placed = None
        resolution = stage_post(book, row, None, fact.occurred_at) if lost else stage_void(book, row)
    if resolution is None and row is not None:
        return False  # closed before
    grant = await repo.paid_grant(book.conn, fact.payment_intent_id) if lost else None
    loss = await _stage_dispute_loss(book, fact, grant) if lost and fact.account_id else None
    booked = await book.flush()
    if placed is not None:
        await repo.insert_holds(book.conn, [placed])
        resolution = resolution or Resolution(spec.id, "voided", 0, None)
    assert resolution is not None
    await repo.resolve_holds(book.conn, [resolution.row(booked, book.now)])
    if grant and loss:
        back, from_prepaid = loss
        disputed = fact.amount.amount_minor
        await repo.record_return(book.conn, grant["id"], back.unused, disputed=disputed, from_prepaid=from_prepaid)
    return True


def _post_unheld(book: Book, spec: Transfer, fact: DisputeClosed) -> Resolution:
    """A lost dispute whose opening never arrived: the money leaves as the hold would have."""
    key = f"post:{spec.id}"
    debit, credit = book.balance(spec.debit), book.balance(spec.credit)
    postings = (Posting(debit.account, spec.amount), Posting(credit.account, -spec.amount))
    book.post(Entry(key, spec.kind, fact.occurred_at, postings, spec.source_ref))
    return Resolution(spec.id, "posted", spec.amount, key)


async def _stage_dispute_loss(book: Book, fact: DisputeClosed, grant: asyncpg.Record | None) -> tuple[CreditsBack, int]:
    """What a lost dispute owes the customer no more: the pack's money still deferred that
    it took back (that much of the loss is offset by the liability it ends; the rest paid
    for credits already used) and the credits that money bought. Returns the credits
    back and the money taken out of prepaid."""
    assert fact.account_id is not None
    amount, currency = fact.amount.amount_minor, fact.amount.currency
    prepaid, losses = customer_prepaid(fact.account_id, currency), dispute_losses(currency)
    await book.load([prepaid, losses])
    from_prepaid = _from_prepaid(book, prepaid, grant, amount)
    postings = [Posting(prepaid, from_prepaid), Posting(losses, -from_prepaid)] if from_prepaid else []
    back = await _credits_back(book, fact.account_id, grant, amount, DISPUTED_USAGE)
    if postings or back.postings:
        key = f"dispute-loss:{fact.dispute_id}"
        reverses = grant["granted_tx"] if grant else None
        book.post(Entry(key, "dispute_loss", fact.occurred_at, (*postings, *back.postings), fact.dispute_id, reverses))
    return back, from_prepaid


# --- usage ---------------------------------------------------------------------------------


async def burn_usage(book: Book, usages: list[UsageIntake], *, dedup: bool = True) -> int:
    """Burn a batch's prepaid usage, one entry per account and hour, so the hot revenue
    account takes one row update per batch however many records it holds. A customer's
    credits never go below zero: usage beyond them is booked as overdrawn (owed to us),
    so nothing used is ever unbooked. Returns how many records burned (after dedup;
    without it for records back from the DLQ, which were never burned)."""
    prepaid = [u for u in usages if u.billing == "prepaid"]
    if not prepaid:
        return 0
    fresh = await drop_republished(book.conn, prepaid) if dedup else prepaid
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
    recognition = await _recognition(
        book, {a: [g.id for g in grants[customer_credits(a).id]] for a in accounts}, revenue_from_usage
    )
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
        postings += recognition.postings(account, from_grants, revenue_from_usage)
        business_time = max(u.occurred_at for u in records)
        book.post(Entry(keys[(account, hour)], "usage", business_time, tuple(postings), records[0].event_id))
        book.count_usage(credits.id, units)
    await book.flush()
    await repo.take_from_grants(book.conn, taken)
    await repo.record_recognition(book.conn, recognition.done)
    return len(fresh)


# --- transfers -----------------------------------------------------------------------------


async def transfer_many(book: Book, transfers: list[Transfer]) -> list[Outcome | Rejected]:
    """Book transfers in one phase (an entry) or place holds (two-phase): one outcome, or
    the refusal, per transfer; a refused transfer refuses only itself."""
    await book.load_ids({t.debit for t in transfers} | {t.credit for t in transfers})
    booked = await book.booked(f"transfer:{t.id}" for t in transfers if not t.pending)
    holds = await repo.existing_holds(book.conn, [t.id for t in transfers if t.pending])
    outcomes: list[Outcome | Rejected] = []
    for t in transfers:
        try:
            outcomes.append(stage_transfer(book, t, booked, holds))
        except Rejected as exc:
            outcomes.append(exc)
    await book.flush()
    placed = [t for t, o in zip(transfers, outcomes, strict=True) if t.pending and o == "created"]
    await repo.insert_holds(book.conn, [hold_row(book, t) for t in placed])
    return outcomes


async def post_hold(book: Book, hold_id: str, amount: int | None) -> bool:
    """Post a hold in full (amount None) or in part, releasing the rest. False if already posted."""
    resolution = stage_post(book, await pending(book, hold_id), amount)
    if resolution is None:
        return False
    booked = await book.flush()
    await repo.resolve_holds(book.conn, [resolution.row(booked, book.now)])
    return True


async def void_hold(book: Book, hold_id: str) -> bool:
    """Release a hold entirely. False if it was already voided or expired."""
    resolution = stage_void(book, await pending(book, hold_id))
    if resolution is None:
        return False
    booked = await book.flush()
    await repo.resolve_holds(book.conn, [resolution.row(booked, book.now)])
    return True


# --- what ends on its own ------------------------------------------------------------------


async def expire_what_is_due(book: Book) -> tuple[int, int]:
    """Release every hold past its deadline and book the end of every credit grant whose
    time has come; returns how many of each."""
    holds = await repo.due_holds(book.conn, book.now)
    await book.load_ids({r["debit_account"] for r in holds} | {r["credit_account"] for r in holds})
    expired = [resolution for r in holds if (resolution := stage_void(book, r, "expired")) is not None]
    grants = await repo.due_grants(book.conn, book.now)
    await book.load_ids({r["account_id"] for r in grants})
    await book.load([CREDITS_EXPIRED])
    owners = {r["id"]: book.balance(r["account_id"]).owner for r in grants}
    by_owner: dict[str, list[str]] = defaultdict(list)
    for grant_id, owner in owners.items():
        by_owner[owner].append(grant_id)
    recognition = await _recognition(book, by_owner, revenue_from_expiry)
    ended = [(r["id"], units, f"expiry:{r['id']}") for r in grants if (units := _expire(book, r, recognition))]
    booked = await book.flush()
    await repo.resolve_holds(book.conn, [resolution.row(booked, book.now) for resolution in expired])
    await repo.record_expiries(book.conn, [(grant, units, booked[key].tx_id) for grant, units, key in ended])
    await repo.record_recognition(book.conn, recognition.done)
    if holds or ended:
        log.info("expired", holds=len(holds), grants=len(ended), units=sum(u for _, u, _ in ended))
    return len(holds), len(ended)


def _expire(book: Book, grant: asyncpg.Record, recognition: Recognition) -> int:
    """Post the end of one grant, recognising the money of its paid credits that expire
    (breakage); returns the units it took (0 if none could go)."""
    account = book.balance(grant["account_id"])
    # A hold on the credits keeps what it holds; the rest of the grant expires.
    units = min(grant["remaining"], account.available_conservative)
    if units <= 0:
        return 0
    point = recognition.checkpoint()
    postings = (
        Posting(customer_credits(account.owner), units),
        Posting(CREDITS_EXPIRED, -units),
        *recognition.postings(account.owner, {grant["id"]: units}, revenue_from_expiry),
    )
    try:
        book.post(Entry(f"expiry:{grant['id']}", "grant_expiry", grant["expires_at"], postings, grant["id"]))
    except Rejected as exc:
        recognition.restore(point)
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
    taken, recognised = await _settle_overdrawn(book, account_id, key, grant)
    booked = await book.flush()
    new = repo.NewGrant(
        grant_id, credits.id, "promotional", PROMOTIONAL_PRIORITY, units, grant.remaining, booked[key].tx_id,
        expires_at=expires_at,
    )  # fmt: skip
    await repo.insert_grant(book.conn, new)
    await repo.take_from_grants(book.conn, taken)
    await repo.record_recognition(book.conn, recognised)
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
