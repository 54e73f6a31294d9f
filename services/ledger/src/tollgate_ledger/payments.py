"""What a payment, a refund or a dispute does to the book.

Each is keyed by the business object (Checkout Session, PaymentIntent and cumulative
refund, dispute), never by the Stripe event, since several events describe one fact.
"""

from tollgate_shared.contracts import DisputeClosed, DisputeOpened, PaymentRefunded, PaymentSucceeded
from tollgate_shared.logging import get_logger

from .book import Book
from .domain import (
    CREDITS_ISSUED,
    PAID_PRIORITY,
    REFUNDED_USAGE,
    Entry,
    Posting,
    customer_credits,
    customer_prepaid,
    dispute_losses,
    refunds_paid,
    stripe_clearing,
)
from .grants import add_grant, settle_overdrawn
from .transfers import Transfer, hold, post_hold, void_hold

log = get_logger(__name__)


async def credit_purchase(book: Book, fact: PaymentSucceeded) -> bool:
    """Money in at Stripe, owed back as service; the customer's credits grow by a paid grant."""
    key = f"purchase:{fact.checkout_session_id}"
    if await book.booked([key]):
        return False
    credits, prepaid = customer_credits(fact.account_id), customer_prepaid(fact.account_id, fact.amount.currency)
    clearing = stripe_clearing(fact.amount.currency)
    postings = [Posting(CREDITS_ISSUED, fact.credits), Posting(credits, -fact.credits)]
    if fact.amount.amount_minor:
        postings += [Posting(clearing, fact.amount.amount_minor), Posting(prepaid, -fact.amount.amount_minor)]
    await book.load([credits, prepaid, clearing, CREDITS_ISSUED])
    reference = fact.payment_intent_id or fact.checkout_session_id
    book.post(Entry(key, "purchase", fact.occurred_at, tuple(postings), reference))
    booked = await book.flush()
    await add_grant(
        book,
        f"purchase:{fact.checkout_session_id}",
        fact.account_id,
        "paid",
        PAID_PRIORITY,
        fact.credits,
        booked[key].tx_id,
        source_ref=reference,
        paid_minor=fact.amount.amount_minor,
        currency=fact.amount.currency,
    )
    await settle_overdrawn(book, fact.account_id)
    return True


async def refund_payment(book: Book, fact: PaymentRefunded) -> bool:
    """Money back to the customer. The credits it paid for go too: the unused ones are
    reversed; any already used are booked explicitly as refunded usage."""
    refunded_total = fact.amount_refunded.amount_minor
    key = f"refund:{fact.payment_intent_id}:{refunded_total}"
    if await book.booked([key]):
        return False
    grant = await book.conn.fetchrow(
        "SELECT id, account_id, granted, remaining, paid_minor, refunded_minor, granted_tx FROM credit_grants "
        "WHERE source_ref = $1 AND kind = 'paid' FOR UPDATE",
        fact.payment_intent_id,
    )
    already = grant["refunded_minor"] if grant else 0
    money = refunded_total - already
    if money <= 0:
        return False  # an older refund total, arriving late: nothing new
    currency = fact.amount_refunded.currency
    credits, prepaid, clearing = (
        customer_credits(fact.account_id),
        customer_prepaid(fact.account_id, currency),
        stripe_clearing(currency),
    )
    await book.load([credits, prepaid, clearing, CREDITS_ISSUED, REFUNDED_USAGE, refunds_paid(currency)])
    postings = [Posting(prepaid, money), Posting(clearing, -money)]
    if book.balance(prepaid.id).available < money:
        # Refunding more than the customer prepaid (e.g. a charge the ledger never saw).
        postings = [Posting(refunds_paid(currency), money), Posting(clearing, -money)]
    unused = used = 0
    if grant and grant["paid_minor"]:
        paid = grant["paid_minor"]
        # Cumulative rounding: the credits revoked by all refunds so far never drift from
        # the refunded share of the grant, and a full refund revokes it exactly.
        revoke = grant["granted"] * min(refunded_total, paid) // paid - grant["granted"] * min(already, paid) // paid
        unused = min(revoke, grant["remaining"], book.balance(credits.id).available_conservative)
        used = revoke - unused
        if unused:
            postings += [Posting(credits, unused), Posting(CREDITS_ISSUED, -unused)]
        if used:
            postings += [Posting(REFUNDED_USAGE, used), Posting(CREDITS_ISSUED, -used)]
    book.post(
        Entry(
            key,
            "refund",
            fact.occurred_at,
            tuple(postings),
            fact.payment_intent_id,
            reverses=grant["granted_tx"] if grant else None,
        )
    )
    await book.flush()
    if grant:
        await book.conn.execute(
            "UPDATE credit_grants SET remaining = remaining - $2, refunded_minor = $3 WHERE id = $1",
            grant["id"],
            unused,
            refunded_total,
        )
    log.info("refund booked", payment_intent=fact.payment_intent_id, money=money, unused=unused, used=used)
    return True


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
    """The disputed money is held until the dispute closes."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    return await hold(book, _dispute_hold(fact))


async def close_dispute(book: Book, fact: DisputeClosed) -> bool:
    """Lost: the hold is posted as a loss. Won: the hold is voided."""
    currency = fact.amount.currency
    await book.load([dispute_losses(currency), stripe_clearing(currency)])
    spec = _dispute_hold(fact)
    await hold(book, spec)  # if the opening never arrived
    if fact.outcome == "lost":
        return await post_hold(book, spec.id, None, business_time=fact.occurred_at)
    return await void_hold(book, spec.id)
