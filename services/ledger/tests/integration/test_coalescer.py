"""Transfers through the coalescer against a real PostgreSQL: many callers share a
commit, each answered with its own outcome, a refusal or a failure only its own."""

import asyncio
import secrets

import asyncpg
import pytest

from tollgate_ledger import finance
from tollgate_ledger.book import Book
from tollgate_ledger.coalescer import Coalescer, Place, Post, Void
from tollgate_ledger.domain import Account, Rejected
from tollgate_ledger.holds import Transfer

from .helpers import scalar

WALLETS = 20


@pytest.fixture
async def coalescer(pool: asyncpg.Pool) -> Coalescer:
    accounts = [Account("funding", "system", "asset", "EUR/2", owner_kind="system")]
    accounts += [Account(f"wallet:{i}", f"w{i}", "liability", "EUR/2", ("no_overdraft",)) for i in range(WALLETS)]
    async with pool.acquire() as conn, conn.transaction():
        book = await Book.open(conn)
        await book.load(accounts)
        await book.flush()
    c = Coalescer(lambda: pool, threshold=0)
    c.start()
    yield c  # type: ignore[misc]
    await c.stop()


async def test_concurrent_transfers_share_commits_and_each_gets_its_own_answer(
    pool: asyncpg.Pool, coalescer: Coalescer
) -> None:
    run = secrets.token_hex(3)
    funding = [Place(Transfer(f"{run}-fund-{i}", "funding", f"wallet:{i}", 1_000)) for i in range(WALLETS)]
    assert await asyncio.gather(*(coalescer.book(m) for m in funding)) == ["created"] * WALLETS

    moves = [
        Place(Transfer(f"{run}-{i}", f"wallet:{i % WALLETS}", f"wallet:{(i + 1) % WALLETS}", 10)) for i in range(2_000)
    ]
    again = moves[:50]  # the same ids sent again while the first are in flight
    too_much = [Place(Transfer(f"{run}-over-{i}", f"wallet:{i}", "funding", 1_000_000)) for i in range(5)]
    answers = await asyncio.gather(*(coalescer.book(m) for m in [*moves, *again, *too_much]), return_exceptions=True)

    assert answers[: len(moves)].count("created") + answers[len(moves) : len(moves) + 50].count("created") == 2_000
    assert set(answers[: len(moves) + 50]) <= {"created", "exists"}
    assert all(isinstance(a, Rejected) and a.reason == "overdraft" for a in answers[-5:])
    assert (
        await scalar(
            pool, "SELECT count(*) FROM journal_transactions WHERE idempotency_key LIKE $1", f"transfer:{run}-%"
        )
        == 2_000 + WALLETS
    )
    # Group commit happened: far fewer Books than transfers (one chain lock each).
    groups = await scalar(
        pool,
        "SELECT count(DISTINCT created_at) FROM journal_transactions WHERE idempotency_key LIKE $1",
        f"transfer:{run}-%",
    )
    assert groups < 500
    async with pool.acquire() as conn:
        assert await finance.verify(conn) == []


async def test_holds_posts_and_voids_in_one_group_keep_their_order(pool: asyncpg.Pool, coalescer: Coalescer) -> None:
    run = secrets.token_hex(3)
    await coalescer.book(Place(Transfer(f"{run}-fund", "funding", "wallet:0", 1_000)))
    hold = Transfer(f"{run}-hold", "wallet:0", "wallet:1", 600, pending=True)
    answers = await asyncio.gather(
        coalescer.book(Place(hold)),
        coalescer.book(Post(hold.id, 250)),
        coalescer.book(Void(hold.id)),
        return_exceptions=True,
    )
    assert answers[0] == "created" and answers[1] is True
    assert isinstance(answers[2], Rejected) and answers[2].reason == "transfer_posted"
    assert (
        await scalar(pool, "SELECT credits_posted - debits_posted FROM balances WHERE account_id = 'wallet:1'") == 250
    )


async def test_a_move_the_database_refuses_fails_alone(pool: asyncpg.Pool, coalescer: Coalescer) -> None:
    run = secrets.token_hex(3)
    await coalescer.book(Place(Transfer(f"{run}-fund", "funding", "wallet:2", 1_000)))
    good = [Place(Transfer(f"{run}-{i}", "wallet:2", "wallet:3", 1)) for i in range(30)]
    # PostgreSQL text cannot hold NUL: this one fails at the flush, after the Book took it.
    bad = Place(Transfer(f"{run}-bad", "wallet:2", "wallet:3", 1, source_ref="nul\x00byte"))
    answers = await asyncio.gather(*(coalescer.book(m) for m in [*good[:15], bad, *good[15:]]), return_exceptions=True)
    assert isinstance(answers[15], asyncpg.PostgresError)
    assert [a for i, a in enumerate(answers) if i != 15] == ["created"] * 30
    assert await scalar(pool, "SELECT credits_posted - debits_posted FROM balances WHERE account_id = 'wallet:3'") == 30
