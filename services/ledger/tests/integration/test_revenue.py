"""Revenue recognised in money and the deferred-revenue roll-forward, against a real
PostgreSQL: every kind of movement planted, the roll-forward tied out to the cent, and
a period that does not tie refused at close."""

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tollgate_ledger import finance
from tollgate_ledger.book import Book
from tollgate_ledger.cli import print_revenue
from tollgate_ledger.consumers import Deps, book_payments, book_usage
from tollgate_ledger.domain import Entry, Posting, customer_prepaid, period_of, stripe_clearing
from tollgate_ledger.handlers import credit_purchase, expire_what_is_due, refund_payment
from tollgate_shared.contracts import (
    DisputeClosed,
    DisputeOpened,
    Money,
    PaymentRefunded,
    PaymentsEvent,
    TopUpRequested,
    TopUpSucceeded,
)

from .helpers import in_book, purchase, scalar, usage


def customer() -> str:
    return f"cus_{secrets.token_hex(4)}"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="usd")


async def pay(pool: asyncpg.Pool, *facts: PaymentsEvent, valid_for: timedelta | None = None) -> None:
    for fact in facts:
        async with pool.acquire() as conn, conn.transaction():
            await book_payments(Deps(0, valid_for), conn, [fact])


async def burn(pool: asyncpg.Pool, account: str, units: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await book_usage(Deps(0), conn, [usage(account, units)])


async def prepaid(pool: asyncpg.Pool, account: str) -> int:
    held = await scalar(
        pool,
        "SELECT credits_posted - debits_posted FROM balances WHERE account_id = $1",
        customer_prepaid(account, "usd").id,
    )
    return int(held or 0)


def refund(account: str, pi: str, total: int) -> PaymentRefunded:
    return PaymentRefunded(account_id=account, payment_intent_id=pi, amount_refunded=usd(total), full=False)


async def plant_every_movement(pool: asyncpg.Pool) -> list[str]:
    """A purchase used and partly refunded, usage settled by a top-up, a pack expiring,
    a dispute lost, a pack refunded after use; returns the customers."""
    a, b, c, d, e = (customer() for _ in range(5))

    # Used: 1,000 credits for $20.00, 300 used -> $6.00 recognised; then $5.00 refunded
    # out of what is still deferred (250 unused credits go with it).
    pack = purchase(a, 1_000, 2_000)
    await pay(pool, pack)
    await burn(pool, a, 300)
    assert await prepaid(pool, a) == 1_400
    assert pack.payment_intent_id
    await pay(pool, refund(a, pack.payment_intent_id, 500))
    assert await prepaid(pool, a) == 900

    # Settled: 100 calls used beyond any credits, then a $10.00 top-up of 200 credits
    # pays them: half its money is recognised at once.
    await burn(pool, b, 100)
    top_up = {"account_id": b, "top_up_id": f"tu_{b}", "credits": 200, "amount": usd(1_000), "source": "api"}
    await pay(pool, TopUpRequested(**top_up), TopUpSucceeded(payment_intent_id=f"pi_tu_{b}", **top_up))  # type: ignore[arg-type]
    assert await prepaid(pool, b) == 500

    # Expired: 100 credits for $7.00 that end soon; 40 used ($2.80), the 60 left expire
    # and their $4.20 is breakage.
    await pay(pool, purchase(c, 100, 700), valid_for=timedelta(milliseconds=400))
    await burn(pool, c, 40)
    await asyncio.sleep(0.5)
    assert await in_book(pool, expire_what_is_due) == (0, 1)
    assert await prepaid(pool, c) == 0

    # Disputed and lost: 900 of 1,000 credits used ($18.00 recognised); the $20.00 lost
    # ends the $2.00 still deferred, the rest is a loss.
    disputed = purchase(d, 1_000, 2_000)
    await pay(pool, disputed)
    await burn(pool, d, 900)
    assert disputed.payment_intent_id
    common = {"account_id": d, "dispute_id": f"dp_{d}", "payment_intent_id": disputed.payment_intent_id}
    await pay(
        pool, DisputeOpened(amount=usd(2_000), **common), DisputeClosed(amount=usd(2_000), outcome="lost", **common)
    )
    assert await prepaid(pool, d) == 0

    # Refunded after use: all 100 credits used ($10.00 recognised), then refunded in full:
    # nothing was deferred, so the money is a refund of used credits, not of prepaid.
    used_up = purchase(e, 100, 1_000)
    await pay(pool, used_up)
    await burn(pool, e, 100)
    assert used_up.payment_intent_id
    await in_book(pool, lambda bk: refund_payment(bk, refund(e, used_up.payment_intent_id or "", 1_000)))
    assert await prepaid(pool, e) == 0
    return [a, b, c, d, e]


async def test_every_movement_recognises_or_returns_prepaid_money_and_the_roll_forward_ties(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    customers = await plant_every_movement(pool)
    async with pool.acquire() as conn:
        (rf,) = await finance.revenue(conn, period_of(datetime.now(UTC)))
        assert await finance.verify(conn) == []
    assert rf.asset == "USD/2"
    assert (rf.opening, rf.prepayments) == (0, 2_000 + 1_000 + 700 + 2_000 + 1_000)
    assert rf.recognised_usage == 600 + 500 + 280 + 1_800 + 1_000
    assert rf.recognised_expiry == 420
    assert (rf.refunds, rf.disputes_lost, rf.corrections, rf.unexplained) == (500, 200, 0, 0)
    assert rf.closing == rf.prepaid_closing == 900 + 500 == sum([await prepaid(pool, x) for x in customers])
    assert rf.revenue_booked == rf.recognised
    assert rf.tied, rf.problems
    assert (
        await scalar(pool, "SELECT sum(amount) FROM postings WHERE account_id = 'system:refunds_of_used_credits:USD/2'")
        == 1_000
    )

    assert print_revenue([rf]) == 0
    assert f"{rf.period}\tUSD/2\t= closing\t1400" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("usage", "USD/2: 100 recognised from prepaid, 0 booked as revenue"),
        ("manual_adjustment", "USD/2: -100 of prepaid money moved by entries that should not move it"),
    ],
)
async def test_a_period_whose_roll_forward_does_not_tie_cannot_close(
    pool: asyncpg.Pool, kind: str, problem: str
) -> None:
    account, october = customer(), datetime(2026, 10, 20, tzinfo=UTC)
    await in_book(
        pool, lambda bk: credit_purchase(bk, purchase(account, 100, 1_000).model_copy(update={"occurred_at": october}))
    )

    async def move_prepaid_by_hand(book: Book) -> None:
        # An entry of a kind that must never touch prepaid money (a bug, or a hand-made row).
        prepaid_money, clearing = customer_prepaid(account, "usd"), stripe_clearing("usd")
        await book.load([prepaid_money, clearing])
        postings = (Posting(prepaid_money, 100), Posting(clearing, -100))
        book.post(Entry(f"stray:{account}", kind, october, postings))
        await book.flush()

    await in_book(pool, move_prepaid_by_hand)
    async with pool.acquire() as conn:
        (rf,) = await finance.revenue(conn, "2026-10")
        assert problem in rf.problems
        with pytest.raises(finance.CloseRefused, match="roll-forward does not tie"):
            async with conn.transaction():
                await finance.close_period(conn, "2026-10")
        assert await conn.fetchval("SELECT count(*) FROM periods") == 0
    assert print_revenue([rf]) == 1


async def test_the_next_period_opens_with_what_the_close_stamped(pool: asyncpg.Pool) -> None:
    account, october = customer(), datetime(2026, 10, 20, tzinfo=UTC)
    await in_book(
        pool, lambda bk: credit_purchase(bk, purchase(account, 100, 1_000).model_copy(update={"occurred_at": october}))
    )
    async with pool.acquire() as conn:
        async with conn.transaction():
            await finance.close_period(conn, "2026-10")
        (november,) = await finance.revenue(conn, "2026-11")
    assert (november.opening, november.closed_opening, november.closing) == (1_000, 1_000, 1_000)
    assert november.tied
