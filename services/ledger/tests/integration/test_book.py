"""The book of record against a real PostgreSQL: idempotency, flags, holds, grants,
refunds, disputes, the chain, periods and exports."""

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tollgate_ledger import finance, metrics, repo
from tollgate_ledger.book import Book
from tollgate_ledger.cli import print_trial_balance
from tollgate_ledger.consumers import Deps, book_payments, book_usage
from tollgate_ledger.domain import CREDITS_CONSUMED, Account, Rejected, customer_credits, customer_overdrawn
from tollgate_ledger.handlers import (
    adjust_credits,
    close_account,
    credit_purchase,
    expire_what_is_due,
    grant_promotional,
    post_hold,
    refund_payment,
    reverse,
    transfer_many,
    void_hold,
)
from tollgate_ledger.holds import Transfer
from tollgate_shared.contracts import DisputeClosed, DisputeOpened, Money, PaymentRefunded

from .helpers import credits_of, in_book, purchase, scalar, usage


def customer() -> str:
    return f"cus_{secrets.token_hex(4)}"


async def burn(pool: asyncpg.Pool, *usages: object) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await book_usage(Deps(0), conn, list(usages))  # type: ignore[arg-type]


async def open_accounts(pool: asyncpg.Pool, *specs: tuple[str, str, tuple[str, ...]]) -> None:
    async def work(book: Book) -> None:
        await book.load(
            [Account(i, "system", t, "USD/2", f, owner_kind="system") for i, t, f in specs]  # type: ignore[arg-type]
        )
        await book.flush()

    await in_book(pool, work)


class TestPurchases:
    async def test_credit_the_customer_once_however_often_delivered(self, pool: asyncpg.Pool) -> None:
        account, fact = customer(), purchase(customer())
        fact = purchase(account)
        assert await in_book(pool, lambda b: credit_purchase(b, fact)) is True
        assert await in_book(pool, lambda b: credit_purchase(b, fact)) is False
        assert await credits_of(pool, account) == 10_000
        assert await scalar(pool, "SELECT count(*) FROM journal_transactions") == 1

    async def test_metrics_read_the_journal_as_committed_not_what_rolled_back(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account)))
        with pytest.raises(RuntimeError):
            async with pool.acquire() as conn, conn.transaction():
                await credit_purchase(await Book.open(conn), purchase(account))
                raise RuntimeError("the rest of the change failed")
        async with pool.acquire() as conn:
            await metrics.refresh(conn)
        assert REGISTRY.get_sample_value("tollgate_ledger_journal_seq") == 1

    async def test_publish_the_new_balance_with_a_rising_version(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account)))
        await burn(pool, usage(account, 7))
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT key, payload FROM outbox WHERE topic = 'ledger.balances' ORDER BY id")
        credits = [r["payload"] for r in rows if r["key"] == customer_credits(account).id]
        assert [(p["current"], p["version"]) for p in credits] == [(10_000, 1), (9_993, 2)]
        assert credits[-1]["account_id"] == account
        assert [p["usage_total"] for p in credits] == [0, 7]  # what keys reconciles its consumption with


class TestUsage:
    async def test_burn_a_batch_as_one_entry_per_account(self, pool: asyncpg.Pool) -> None:
        a, b = customer(), customer()
        for c in (a, b):
            await in_book(pool, lambda bk, c=c: credit_purchase(bk, purchase(c, 1_000)))
        await burn(pool, *[usage(a, 2) for _ in range(50)], *[usage(b, 1) for _ in range(30)])
        assert (await credits_of(pool, a), await credits_of(pool, b)) == (900, 970)
        assert await scalar(pool, "SELECT count(*) FROM journal_transactions WHERE kind = 'usage'") == 2

    async def test_republished_records_are_burned_once(self, pool: asyncpg.Pool) -> None:
        account, key = customer(), secrets.token_hex(8)
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)))
        records = [usage(account, 1, key=f"00000000-0000-0000-0000-{key[:12]}", total=n) for n in range(1, 6)]
        await burn(pool, *records)
        await burn(pool, *records[2:])  # the keys service's outbox sent these again
        assert await credits_of(pool, account) == 95

    async def test_metered_usage_is_billed_by_stripe_not_burned(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)))
        await burn(pool, usage(account, 5, billing="metered"))
        assert await credits_of(pool, account) == 100

    async def test_usage_beyond_the_credits_is_booked_as_overdrawn_never_below_zero(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 10)))
        await burn(pool, usage(account, 7), usage(account, 8))
        async with pool.acquire() as conn:
            overdrawn = await repo.balance(conn, customer_overdrawn(account).id)
            consumed = await repo.balance(conn, CREDITS_CONSUMED.id)
        assert await credits_of(pool, account) == 0
        assert overdrawn is not None and overdrawn.current == 5
        assert consumed is not None and consumed.current >= 15

    async def test_credits_that_arrive_later_settle_the_overdrawn_usage(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await burn(pool, usage(account, 5))  # usage read before the purchase that covers it
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 20)))
        async with pool.acquire() as conn:
            overdrawn = await repo.balance(conn, customer_overdrawn(account).id)
        assert overdrawn is not None and overdrawn.current == 0
        assert await credits_of(pool, account) == 15
        assert await scalar(pool, "SELECT sum(remaining) FROM credit_grants") == 15

    async def test_many_concurrent_burns_never_overdraw_one_account(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 500)))
        await asyncio.gather(*(burn(pool, *[usage(account, 3) for _ in range(5)]) for _ in range(60)))
        async with pool.acquire() as conn:
            credits = await repo.balance(conn, customer_credits(account).id)
            overdrawn = await repo.balance(conn, customer_overdrawn(account).id)
        assert credits is not None and overdrawn is not None
        assert credits.current == 0
        assert credits.debits_posted + overdrawn.current == 900  # every unit booked once
        assert await scalar(pool, "SELECT sum(remaining) FROM credit_grants") == 0


class TestDatabaseRules:
    async def test_an_unbalanced_transaction_cannot_commit(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account)))
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with pool.acquire() as conn, conn.transaction():
                tx = await conn.fetchval(
                    "INSERT INTO journal_transactions (idempotency_key, kind, business_time, created_at, seq, period, "
                    "prev_hash, hash) VALUES ('bad', 'manual', now(), now(), 999, '2026-11', '\\x00', '\\x01') "
                    "RETURNING id"
                )
                await conn.execute(
                    "INSERT INTO postings (tx_id, account_id, asset, amount) VALUES ($1, $2, 'CALLS', 5)",
                    tx,
                    customer_credits(account).id,
                )

    async def test_the_database_refuses_an_overdraft_whatever_wrote_it(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 10)))
        with pytest.raises(asyncpg.CheckViolationError, match="no_overdraft"):
            async with pool.acquire() as conn:
                await conn.execute(
                    "UPDATE balances SET debits_posted = debits_posted + 11 WHERE account_id = $1",
                    customer_credits(account).id,
                )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE postings SET amount = amount * 2",
            "DELETE FROM postings",
            "UPDATE journal_transactions SET kind = 'x'",
            "TRUNCATE postings CASCADE",
        ],
    )
    async def test_the_journal_is_append_only(self, pool: asyncpg.Pool, statement: str) -> None:
        await in_book(pool, lambda b: credit_purchase(b, purchase(customer())))
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            async with pool.acquire() as conn:
                await conn.execute(statement)


class TestTransfers:
    @pytest.fixture
    async def accounts(self, pool: asyncpg.Pool) -> tuple[str, str]:
        src, dst, funding = (f"{name}:{secrets.token_hex(3)}" for name in ("wallet", "merchant", "funding"))
        await open_accounts(
            pool, (src, "liability", ("no_overdraft",)), (dst, "liability", ()), (funding, "equity", ())
        )
        seed = Transfer(f"seed-{src}", funding, src, 1_000)
        assert await in_book(pool, lambda b: transfer_many(b, [seed])) == ["created"]
        return src, dst

    async def balance(self, pool: asyncpg.Pool, account: str) -> tuple[int, int, int]:
        async with pool.acquire() as conn:
            b = await repo.balance(conn, account)
        assert b is not None
        return b.current, b.pending, b.available

    async def test_a_transfer_is_idempotent_by_client_id(self, pool: asyncpg.Pool, accounts: tuple[str, str]) -> None:
        src, dst = accounts
        t = Transfer("t-1", src, dst, 100)
        assert await in_book(pool, lambda b: transfer_many(b, [t, t])) == ["created", "exists"]
        assert await in_book(pool, lambda b: transfer_many(b, [t])) == ["exists"]
        assert await self.balance(pool, src) == (900, 0, 900)

    async def test_a_refused_transfer_changes_nothing_and_others_proceed(
        self, pool: asyncpg.Pool, accounts: tuple[str, str]
    ) -> None:
        src, dst = accounts
        outcomes = await in_book(
            pool, lambda b: transfer_many(b, [Transfer("big", src, dst, 5_000), Transfer("ok", src, dst, 10)])
        )
        assert isinstance(outcomes[0], Rejected) and outcomes[0].reason == "overdraft"
        assert outcomes[1] == "created"
        assert await self.balance(pool, src) == (990, 0, 990)

    async def test_hold_then_post_part_releases_the_rest(self, pool: asyncpg.Pool, accounts: tuple[str, str]) -> None:
        src, dst = accounts
        await in_book(pool, lambda b: transfer_many(b, [Transfer("h", src, dst, 300, pending=True)]))
        assert await self.balance(pool, src) == (1_000, -300, 700)
        assert await self.balance(pool, dst) == (0, 300, 0)  # a pending inflow is not spendable by default
        assert await in_book(pool, lambda b: post_hold(b, "h", 120)) is True
        assert await in_book(pool, lambda b: post_hold(b, "h", 120)) is False  # already posted
        assert await self.balance(pool, src) == (880, 0, 880)
        assert await self.balance(pool, dst) == (120, 0, 120)

    async def test_a_hold_of_the_whole_balance_can_be_posted_in_full(
        self, pool: asyncpg.Pool, accounts: tuple[str, str]
    ) -> None:
        src, dst = accounts
        await in_book(pool, lambda b: transfer_many(b, [Transfer("all", src, dst, 1_000, pending=True)]))
        assert await in_book(pool, lambda b: post_hold(b, "all", None)) is True
        assert await self.balance(pool, src) == (0, 0, 0)

    async def test_a_hold_cannot_spend_what_another_hold_reserved(
        self, pool: asyncpg.Pool, accounts: tuple[str, str]
    ) -> None:
        src, dst = accounts
        holds = [Transfer("h1", src, dst, 700, pending=True), Transfer("h2", src, dst, 400, pending=True)]
        outcomes = await in_book(pool, lambda b: transfer_many(b, holds))
        assert outcomes[0] == "created" and isinstance(outcomes[1], Rejected)

    async def test_void_and_expiry_release_the_hold(self, pool: asyncpg.Pool, accounts: tuple[str, str]) -> None:
        src, dst = accounts
        await in_book(
            pool,
            lambda b: transfer_many(
                b,
                [Transfer("v", src, dst, 100, pending=True), Transfer("e", src, dst, 50, pending=True, timeout_s=0.05)],
            ),
        )
        assert await in_book(pool, lambda b: void_hold(b, "v")) is True
        await asyncio.sleep(0.1)
        with pytest.raises(Rejected, match="expired"):
            await in_book(pool, lambda b: post_hold(b, "e", None))
        assert await in_book(pool, expire_what_is_due) == (1, 0)
        assert await self.balance(pool, src) == (1_000, 0, 1_000)
        assert await scalar(pool, "SELECT state FROM pending_transfers WHERE id = 'e'") == "expired"

    async def test_transfers_between_assets_or_to_unknown_accounts_are_refused(
        self, pool: asyncpg.Pool, accounts: tuple[str, str]
    ) -> None:
        src, _ = accounts
        outcomes = await in_book(
            pool,
            lambda b: transfer_many(
                b,
                [Transfer("x", src, "nope", 1), Transfer("y", src, CREDITS_CONSUMED.id, 1), Transfer("z", src, src, 1)],
            ),
        )
        assert [o.reason for o in outcomes if isinstance(o, Rejected)] == [
            "account_not_found",
            "account_not_found",
            "same_account",
        ]


class TestGrants:
    async def test_promotional_credits_burn_first_and_expire_with_their_own_entry(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)))
        soon = datetime.now(UTC) + timedelta(milliseconds=300)
        await in_book(pool, lambda b: grant_promotional(b, "promo-1", account, 50, expires_at=soon, reason="launch"))
        await burn(pool, usage(account, 30))
        rows = await scalar(pool, "SELECT json_object_agg(kind, remaining) FROM credit_grants")
        assert rows == {"paid": 100, "promotional": 20}
        await asyncio.sleep(0.4)
        assert await in_book(pool, expire_what_is_due) == (0, 1)
        assert await credits_of(pool, account) == 100
        assert await scalar(pool, "SELECT count(*) FROM journal_transactions WHERE kind = 'grant_expiry'") == 1


class TestCorrections:
    async def test_manual_adjustments_have_their_own_account_and_grant(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)))
        assert await in_book(pool, lambda b: adjust_credits(b, "adj-1", account, 25, "goodwill")) is True
        assert await in_book(pool, lambda b: adjust_credits(b, "adj-1", account, 25, "goodwill")) is False
        assert await in_book(pool, lambda b: adjust_credits(b, "adj-2", account, -40, "clawback")) is True
        assert await credits_of(pool, account) == 85
        assert await scalar(pool, "SELECT sum(remaining) FROM credit_grants") == 85
        with pytest.raises(Rejected, match="available"):
            await in_book(pool, lambda b: adjust_credits(b, "adj-3", account, -86, "too much"))
        async with pool.acquire() as conn:
            assert await finance.verify(conn) == []

    async def test_a_transfer_is_corrected_by_a_reversing_entry_once(self, pool: asyncpg.Pool) -> None:
        src, dst = f"a:{secrets.token_hex(3)}", f"b:{secrets.token_hex(3)}"
        await open_accounts(pool, (src, "asset", ()), (dst, "equity", ()))
        await in_book(pool, lambda b: transfer_many(b, [Transfer("wrong", src, dst, 70)]))
        tx = await scalar(pool, "SELECT id FROM journal_transactions WHERE idempotency_key = 'transfer:wrong'")
        first = await in_book(pool, lambda b: reverse(b, tx, "typo"))
        assert await in_book(pool, lambda b: reverse(b, tx, "typo")) == first
        assert await scalar(pool, "SELECT reverses FROM journal_transactions WHERE id = $1", first) == tx
        assert await scalar(pool, "SELECT debits_posted - credits_posted FROM balances WHERE account_id = $1", src) == 0
        await in_book(pool, lambda b: credit_purchase(b, purchase(customer())))
        purchase_tx = await scalar(pool, "SELECT id FROM journal_transactions WHERE kind = 'purchase'")
        with pytest.raises(Rejected, match="own operation"):
            await in_book(pool, lambda b: reverse(b, purchase_tx, "use a refund"))

    async def test_a_closed_account_refuses_every_movement(self, pool: asyncpg.Pool) -> None:
        src, dst = f"a:{secrets.token_hex(3)}", f"b:{secrets.token_hex(3)}"
        await open_accounts(pool, (src, "asset", ()), (dst, "equity", ()))
        await in_book(pool, lambda b: close_account(b, dst))
        outcome = await in_book(pool, lambda b: transfer_many(b, [Transfer("late", src, dst, 1)]))
        assert isinstance(outcome[0], Rejected) and outcome[0].reason == "account_closed"
        with pytest.raises(asyncpg.CheckViolationError, match="closed"):
            await scalar(pool, "UPDATE balances SET credits_posted = 1 WHERE account_id = $1", dst)


class TestRefundsAndDisputes:
    def refund(self, account: str, pi: str, refunded: int, full: bool = False) -> PaymentRefunded:
        return PaymentRefunded(
            account_id=account,
            payment_intent_id=pi,
            amount_refunded=Money(amount_minor=refunded, currency="usd"),
            full=full,
        )

    async def test_a_partial_refund_reverses_its_share_of_the_unused_credits(self, pool: asyncpg.Pool) -> None:
        account, fact = customer(), None
        fact = purchase(account, 1_000, 2_000)
        await in_book(pool, lambda b: credit_purchase(b, fact))
        assert fact.payment_intent_id
        assert (
            await in_book(pool, lambda b: refund_payment(b, self.refund(account, fact.payment_intent_id, 500))) is True
        )
        assert await credits_of(pool, account) == 750
        # the same refund total again (another Stripe event about it) changes nothing
        assert (
            await in_book(pool, lambda b: refund_payment(b, self.refund(account, fact.payment_intent_id, 500))) is False
        )

    async def test_refunding_used_credits_books_the_difference_explicitly(self, pool: asyncpg.Pool) -> None:
        account = customer()
        fact = purchase(account, 1_000, 2_000)
        await in_book(pool, lambda b: credit_purchase(b, fact))
        await burn(pool, usage(account, 900))
        assert fact.payment_intent_id
        await in_book(pool, lambda b: refund_payment(b, self.refund(account, fact.payment_intent_id, 2_000, True)))
        assert await credits_of(pool, account) == 0
        refunded_usage = await scalar(
            pool, "SELECT sum(amount) FROM postings WHERE account_id = 'system:refunded_usage:CALLS'"
        )
        assert refunded_usage == 900
        async with pool.acquire() as conn:
            assert (await repo.trial_balance(conn)).off_balance() == {}


class TestDisputes:
    async def dispute(self, pool: asyncpg.Pool, *facts: object) -> None:
        for fact in facts:
            async with pool.acquire() as conn, conn.transaction():
                await book_payments(Deps(0), conn, [fact])  # type: ignore[list-item]

    def facts(self, account: str, pi: str, amount: int, dispute: str) -> dict[str, Any]:
        money = Money(amount_minor=amount, currency="usd")
        return {"account_id": account, "dispute_id": dispute, "payment_intent_id": pi, "amount": money}

    async def money(self, pool: asyncpg.Pool, account: str) -> dict[str, int]:
        rows = await scalar(
            pool,
            "SELECT json_object_agg(account_id, credits_posted - debits_posted) FROM balances "
            "WHERE account_id IN ($1, 'system:stripe_clearing:USD/2')",
            f"customer:{account}:prepaid:USD/2",
        )
        return {("prepaid" if k.startswith("customer") else "clearing"): v for k, v in rows.items()}

    async def test_a_lost_dispute_takes_the_money_and_the_credits_it_bought(self, pool: asyncpg.Pool) -> None:
        account = customer()
        fact = purchase(account, 1_000, 2_000)
        await in_book(pool, lambda b: credit_purchase(b, fact))
        await burn(pool, usage(account, 300))
        assert fact.payment_intent_id
        common = self.facts(account, fact.payment_intent_id, 2_000, f"dp_{account}")
        await self.dispute(pool, DisputeOpened(**common))
        assert await scalar(pool, "SELECT state FROM pending_transfers WHERE id = $1", f"dispute:dp_{account}") == (
            "pending"
        )
        await self.dispute(pool, DisputeClosed(outcome="lost", **common))
        assert await scalar(pool, "SELECT state FROM pending_transfers WHERE id = $1", f"dispute:dp_{account}") == (
            "posted"
        )
        assert await credits_of(pool, account) == 0  # the 700 left are taken back
        used = await scalar(pool, "SELECT sum(amount) FROM postings WHERE account_id = 'system:disputed_usage:CALLS'")
        assert used == 300  # the 300 used were paid for by money that went back
        # The money left Stripe, and the customer is owed no service for it: a loss on
        # the clearing account, the liability ended.
        assert await self.money(pool, account) == {"prepaid": 0, "clearing": 0}
        async with pool.acquire() as conn:
            assert (await repo.trial_balance(conn)).off_balance() == {}
            assert await finance.verify(conn) == []

    @pytest.mark.parametrize(("opened_as", "outcome"), [("chargeback", "won"), ("inquiry", "warning_closed")])
    async def test_a_won_dispute_or_a_closed_inquiry_releases_its_hold(
        self, pool: asyncpg.Pool, opened_as: str, outcome: str
    ) -> None:
        account = customer()
        fact = purchase(account, 1_000, 2_000)
        await in_book(pool, lambda b: credit_purchase(b, fact))
        assert fact.payment_intent_id
        common = self.facts(account, fact.payment_intent_id, 2_000, f"dp_{account}")
        await self.dispute(pool, DisputeOpened(inquiry=opened_as == "inquiry", **common))
        await self.dispute(pool, DisputeClosed(outcome=outcome, **common))  # type: ignore[arg-type]
        hold = f"dispute:dp_{account}"
        assert await scalar(pool, "SELECT state FROM pending_transfers WHERE id = $1", hold) == "voided"
        assert await credits_of(pool, account) == 1_000
        assert await self.money(pool, account) == {"prepaid": 2_000, "clearing": -2_000 + 2_000 * 0}
        pending = await scalar(
            pool,
            "SELECT debits_pending + credits_pending FROM balances WHERE account_id = 'system:stripe_clearing:USD/2'",
        )
        assert pending == 0


class TestChainAndPeriods:
    async def test_verify_finds_nothing_wrong_in_an_intact_book(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account)))
        await burn(pool, usage(account, 3), usage(account, 4))
        async with pool.acquire() as conn:
            assert await finance.verify(conn) == []

    async def test_verify_detects_an_edit_made_behind_the_triggers(self, pool: asyncpg.Pool) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account)))
        await burn(pool, usage(account, 3))
        async with pool.acquire() as conn:
            # A superuser can switch triggers off; the chain still tells.
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("UPDATE postings SET amount = amount * 2 WHERE amount IN (3, -3)")
            await conn.execute("SET session_replication_role = DEFAULT")
            problems = await finance.verify(conn)
        assert any("does not match its hash" in p for p in problems)
        assert any("running totals differ" in p for p in problems)

    async def test_the_trial_balance_command_fails_when_an_asset_does_not_sum_to_zero(
        self, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
    ) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)))
        async with pool.acquire() as conn:
            assert print_trial_balance(await repo.trial_balance(conn)) == 0
            await conn.execute("SET session_replication_role = replica")  # past every trigger
            await conn.execute("UPDATE postings SET amount = amount + 1 WHERE amount = -100")
            await conn.execute("SET session_replication_role = DEFAULT")
            assert print_trial_balance(await repo.trial_balance(conn)) == 1
        assert "total\tCALLS\tdebits=100\tcredits=99\tOFF" in capsys.readouterr().out

    async def test_a_closed_period_ties_out_and_sends_late_entries_to_the_next(self, pool: asyncpg.Pool) -> None:
        account = customer()
        october = datetime(2026, 10, 20, tzinfo=UTC)
        late = purchase(account, 10)
        await in_book(
            pool, lambda b: credit_purchase(b, purchase(account, 100).model_copy(update={"occurred_at": october}))
        )
        async with pool.acquire() as conn, conn.transaction():
            closed = await finance.close_period(conn, "2026-10")
        assert closed.accounts == 4
        async with pool.acquire() as conn:
            closing = await conn.fetchval(
                "SELECT closing FROM period_balances WHERE period = '2026-10' AND account_id = $1",
                customer_credits(account).id,
            )
        assert closing == -100  # net credit: the customer holds 100 credits
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await scalar(pool, "UPDATE period_balances SET closing = 0")
        await in_book(pool, lambda b: credit_purchase(b, late.model_copy(update={"occurred_at": october})))
        assert await scalar(pool, "SELECT period FROM journal_transactions ORDER BY seq DESC LIMIT 1") == "2026-11"
        async with pool.acquire() as conn:
            with pytest.raises(finance.CloseRefused, match="in order"):
                await finance.close_period(conn, "2026-12")
            assert await finance.verify(conn) == []


class TestAlerts:
    async def test_low_exhausted_and_replenished_are_each_announced_once(self, pool: asyncpg.Pool) -> None:
        account = customer()

        async def book_burn(*usages: object) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await book_usage(Deps(50), conn, list(usages))  # type: ignore[arg-type]

        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)), threshold=50)
        await book_burn(usage(account, 60))  # 40 left: low
        await book_burn(usage(account, 5))  # still low: no new alert
        await book_burn(usage(account, 35))  # 0: exhausted
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)), threshold=50)  # replenished
        async with pool.acquire() as conn:
            alerts = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'ledger.alerts' ORDER BY id")
        assert [(a["payload"]["alert"], a["payload"]["available"]) for a in alerts] == [
            ("low_balance", 40),
            ("exhausted", 0),
            ("replenished", 100),
        ]

    async def test_a_purchase_that_also_settles_overdrawn_usage_announces_one_recovery(
        self, pool: asyncpg.Pool
    ) -> None:
        account = customer()
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)), threshold=50)
        async with pool.acquire() as conn, conn.transaction():
            await book_usage(Deps(50), conn, [usage(account, 130)])  # 30 beyond the credits
        # One Book: the purchase and the settlement of the 30 overdrawn units.
        await in_book(pool, lambda b: credit_purchase(b, purchase(account, 100)), threshold=50)
        assert await credits_of(pool, account) == 70
        async with pool.acquire() as conn:
            alerts = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'ledger.alerts' ORDER BY id")
        assert [a["payload"]["alert"] for a in alerts] == ["exhausted", "replenished"]
