"""Hypothesis state machine: random payments, usage, refunds and transfers, delivered
with duplicates, redeliveries and crashes, against a real PostgreSQL schema.

After every step: every transaction balances, balances equal the sum of postings, no
`no_overdraft` account is below zero, grants sum to the credits they back, and an
operation that failed or was refused changed nothing. At the end, replaying the log of
everything delivered into an empty ledger rebuilds identical balances.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tollgate_ledger import finance
from tollgate_ledger.app import SCHEMA
from tollgate_ledger.book import Book
from tollgate_ledger.consumers import Deps, book_payments, book_usage
from tollgate_ledger.domain import CALLS, Account
from tollgate_ledger.handlers import post_hold, transfer_many, void_hold
from tollgate_ledger.holds import Transfer
from tollgate_shared import db
from tollgate_shared.contracts import Money, PaymentRefunded

from .helpers import purchase, usage

CUSTOMERS = ("cus_a", "cus_b", "cus_c")
WALLETS = ("wallet:1", "wallet:2")
Op = Callable[[asyncpg.Connection], Awaitable[Any]]


class Crash(Exception):
    """A simulated crash: the process dies after the work, before the commit."""


async def fresh_schema(dsn: str) -> tuple[str, asyncpg.Pool]:
    schema = f"test_ledger_sm_{uuid.uuid4().hex[:8]}"
    await db.migrate(dsn, schema, SCHEMA)
    return schema, await db.create_pool(dsn, schema, min_size=1, max_size=4)


async def setup_wallets(conn: asyncpg.Connection) -> None:
    book = await Book.open(conn)
    await book.load(
        [
            Account("funding", "system", "equity", "EUR/2", owner_kind="system"),
            *(Account(w, w, "liability", "EUR/2", ("no_overdraft",)) for w in WALLETS),
        ]
    )
    await book.flush()


class LedgerMachine(RuleBasedStateMachine):
    dsn = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.schema, self.pool = self.run(fresh_schema(self.dsn))
        self.log: list[Op] = []  # every operation that committed, in order: "the topics"
        self.purchases: list[tuple[str, str, int]] = []  # account, payment intent, amount paid
        self.refunded: dict[str, int] = {}
        self.holds: list[str] = []
        self.key_totals: dict[str, int] = {}
        self.units_used = 0  # the model: every unit used, counted once
        self.n = 0
        self.deliver(setup_wallets)

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def deliver(self, op: Op, *, crash: bool = False) -> None:
        """Apply `op` in one transaction, as a consumer would; a crash rolls it back."""

        async def go() -> None:
            async with self.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await op(conn)
                        if crash:
                            raise Crash
                except Crash:
                    pass

        before = self.run(self.snapshot())
        self.run(go())
        if crash:
            assert self.run(self.snapshot()) == before, "a crashed delivery changed the book"
        else:
            self.log.append(op)

    async def snapshot(self) -> list[tuple[Any, ...]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT account_id, debits_posted, credits_posted, debits_pending, credits_pending FROM balances "
                "UNION ALL SELECT 'journal', count(*), 0, 0, 0 FROM journal_transactions ORDER BY 1"
            )
        return [tuple(r) for r in rows]

    def next_id(self) -> str:
        self.n += 1
        return f"{self.n}"

    # --- payments ---------------------------------------------------------------------

    @rule(
        account=st.sampled_from(CUSTOMERS),
        credits=st.integers(1, 500),
        paid=st.integers(0, 5_000),
        copies=st.integers(1, 3),
        crash=st.booleans(),
    )
    def buy(self, account: str, credits: int, paid: int, copies: int, crash: bool) -> None:
        fact = purchase(account, credits, paid, session=f"cs_{self.next_id()}")
        self.deliver(lambda c: book_payments(Deps(100), c, [fact] * copies), crash=crash)
        if not crash and paid:
            assert fact.payment_intent_id
            self.purchases.append((account, fact.payment_intent_id, paid))

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data(), crash=st.booleans(), again=st.booleans())
    def refund(self, data: st.DataObject, crash: bool, again: bool) -> None:
        account, pi, paid = data.draw(st.sampled_from(self.purchases))
        total = data.draw(st.integers(self.refunded.get(pi, 0) + 1, paid)) if self.refunded.get(pi, 0) < paid else paid
        fact = PaymentRefunded(
            account_id=account,
            payment_intent_id=pi,
            amount_refunded=Money(amount_minor=total, currency="usd"),
            full=total == paid,
        )
        self.deliver(lambda c: book_payments(Deps(100), c, [fact, fact] if again else [fact]), crash=crash)
        if not crash:
            self.refunded[pi] = max(self.refunded.get(pi, 0), total)

    # --- usage ------------------------------------------------------------------------

    @rule(
        account=st.sampled_from(CUSTOMERS),
        key=st.sampled_from(["00000000-0000-0000-0000-00000000000" + str(i) for i in range(3)]),
        units=st.lists(st.integers(1, 60), min_size=1, max_size=8),
        redeliver=st.integers(0, 3),
        crash=st.booleans(),
    )
    def use(self, account: str, key: str, units: list[int], redeliver: int, crash: bool) -> None:
        key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key + account))
        total = self.key_totals.get(key_id, 0)
        records = []
        for u in units:
            total += u
            records.append(usage(account, u, key=key_id, total=total))
        # the keys service's outbox re-publishes a prefix of what it already sent
        batch = records + records[:redeliver]
        self.deliver(lambda c: book_usage(Deps(100), c, batch), crash=crash)
        if not crash:
            self.key_totals[key_id] = total
            self.units_used += sum(units)

    # --- transfers --------------------------------------------------------------------

    @rule(wallet=st.sampled_from(WALLETS), amount=st.integers(1, 1_000), crash=st.booleans())
    def fund(self, wallet: str, amount: int, crash: bool) -> None:
        t = Transfer(f"fund-{self.next_id()}", "funding", wallet, amount)
        self.deliver(lambda c: self._transfer(c, t), crash=crash)

    @rule(amount=st.integers(1, 1_500), pending=st.booleans(), copies=st.integers(1, 2))
    def move(self, amount: int, pending: bool, copies: int) -> None:
        t = Transfer(f"t-{self.next_id()}", WALLETS[0], WALLETS[1], amount, pending=pending)
        before = self.run(self.snapshot())
        outcomes: list[Any] = []

        async def op(c: asyncpg.Connection) -> None:
            outcomes[:] = await self._transfer(c, *([t] * copies))

        self.deliver(op)
        if not isinstance(outcomes[0], str):  # refused: nothing changed
            assert self.run(self.snapshot())[:-1] == before[:-1]
        elif pending:
            self.holds.append(t.id)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), void=st.booleans())
    def settle(self, data: st.DataObject, void: bool) -> None:
        hold_id = self.holds.pop(data.draw(st.integers(0, len(self.holds) - 1)))
        part = data.draw(st.integers(0, 100))

        async def op(c: asyncpg.Connection) -> None:
            book = await Book.open(c)
            if void:
                await void_hold(book, hold_id)
            else:
                held = await c.fetchval("SELECT amount FROM pending_transfers WHERE id = $1", hold_id)
                await post_hold(book, hold_id, held * part // 100)

        self.deliver(op)

    async def _transfer(self, c: asyncpg.Connection, *ts: Transfer) -> list[Any]:
        return await transfer_many(await Book.open(c), list(ts))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def book_is_intact(self) -> None:
        async def check() -> None:
            async with self.pool.acquire() as conn:
                assert await finance.verify(conn) == []
                below = await conn.fetch(
                    "SELECT account_id FROM balances WHERE no_overdraft AND CASE WHEN credit_normal "
                    "THEN debits_posted + debits_pending > credits_posted "
                    "ELSE credits_posted + credits_pending > debits_posted END"
                )
                assert below == []
                ungranted = await conn.fetch(
                    "SELECT b.account_id FROM balances b LEFT JOIN credit_grants g ON g.account_id = b.account_id "
                    "WHERE b.account_id LIKE 'customer:%:credits' GROUP BY b.account_id, b.credits_posted, "
                    "b.debits_posted HAVING coalesce(sum(g.remaining), 0) <> b.credits_posted - b.debits_posted"
                )
                assert ungranted == []
                booked = await conn.fetchval(
                    "SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
                    "JOIN accounts a ON a.id = p.account_id WHERE t.kind = 'usage' AND p.amount > 0 AND a.asset = $1",
                    CALLS,
                )  # in calls: the same usage also recognises revenue in money
                assert booked == self.units_used, "usage booked differs from usage delivered (once each)"

        self.run(check())

    def teardown(self) -> None:
        try:
            self.run(self._replay_matches())
        finally:
            self.run(self._drop(self.schema, self.pool))
            self.loop.close()

    async def _replay_matches(self) -> None:
        original = await self.snapshot()
        schema, pool = await fresh_schema(self.dsn)
        try:
            for op in self.log:
                async with pool.acquire() as conn, conn.transaction():
                    await op(conn)
            self_pool, self.pool = self.pool, pool
            try:
                assert await self.snapshot() == original, "replaying the log built different balances"
            finally:
                self.pool = self_pool
        finally:
            await self._drop(schema, pool)

    async def _drop(self, schema: str, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()


def test_ledger_invariants_hold_under_random_operations(database_url: str) -> None:
    LedgerMachine.dsn = database_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
