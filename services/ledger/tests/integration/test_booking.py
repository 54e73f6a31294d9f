"""Booking against a real PostgreSQL: idempotency, database-enforced rules, concurrency."""

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from uuid import uuid4

import asyncpg
import pytest

from tollgate_ledger import repo
from tollgate_ledger.domain import customer_credits
from tollgate_ledger.handlers import burn_usage, credit_purchase
from tollgate_shared.contracts import Money, PaymentSucceeded, UsageRecorded

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("ledger")


def purchase(account: str, credits: int = 10_000) -> PaymentSucceeded:
    return PaymentSucceeded(
        account_id=account,
        customer_email="a@example.com",
        plan="professional",
        product_name="Pro",
        credits=credits,
        amount=Money(amount_minor=2500, currency="usd"),
        checkout_session_id=f"cs_{account}",
    )


def usage(account: str, units: int, billing: str = "prepaid") -> UsageRecorded:
    return UsageRecorded(
        key_id=uuid4(),
        account_id=account,
        plan="professional",
        billing=billing,  # type: ignore[arg-type]
        units=units,
    )


async def current(pool: asyncpg.Pool, account: str) -> int:
    async with pool.acquire() as conn:
        b = await repo.get_balance(conn, customer_credits(account).id)
    assert b is not None
    return b.current


class TestCreditPurchase:
    async def test_credits_the_customer_once_however_often_delivered(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        fact = purchase(account)
        assert await credit_purchase(fact, pool) is True
        assert await credit_purchase(fact, pool) is False
        assert await current(pool, account) == 10_000
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM journal_transactions") == 1

    async def test_every_transaction_sums_to_zero_per_asset(self, pool: asyncpg.Pool) -> None:
        await credit_purchase(purchase(f"cus_{secrets.token_hex(4)}"), pool)
        async with pool.acquire() as conn:
            off = await conn.fetch("SELECT tx_id, asset FROM postings GROUP BY tx_id, asset HAVING sum(amount) <> 0")
        assert off == []

    async def test_publishes_the_customers_new_balance_through_the_outbox(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        await credit_purchase(purchase(account), pool)
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT topic, key, payload FROM outbox")
        calls = [r for r in rows if r["payload"]["asset"] == "CALLS"]
        assert [(r["topic"], r["key"], r["payload"]["current"]) for r in calls] == [
            ("ledger.balances", account, 10_000)
        ]


class TestBurnUsage:
    async def test_burns_prepaid_usage_once(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        await credit_purchase(purchase(account), pool)
        event = usage(account, 7)
        assert await burn_usage(event, pool) is True
        assert await burn_usage(event, pool) is False
        assert await current(pool, account) == 9_993

    async def test_metered_usage_is_not_burned(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        await credit_purchase(purchase(account), pool)
        assert await burn_usage(usage(account, 5, billing="metered"), pool) is False
        assert await current(pool, account) == 10_000

    async def test_concurrent_burns_are_all_counted_without_deadlock(self, pool: asyncpg.Pool) -> None:
        accounts = [f"cus_{secrets.token_hex(4)}" for _ in range(3)]
        for account in accounts:
            await credit_purchase(purchase(account, 1_000), pool)
        burns = [usage(accounts[i % 3], 1) for i in range(90)]
        await asyncio.gather(*(burn_usage(b, pool) for b in burns))
        assert [await current(pool, a) for a in accounts] == [970, 970, 970]


class TestDatabaseRules:
    async def test_an_unbalanced_transaction_cannot_commit(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        await credit_purchase(purchase(account), pool)
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with pool.acquire() as conn, conn.transaction():
                tx = await conn.fetchval(
                    "INSERT INTO journal_transactions (idempotency_key, kind, business_time) "
                    "VALUES ('bad', 'manual', now()) RETURNING id"
                )
                await conn.execute(
                    "INSERT INTO postings (tx_id, account_id, asset, amount) VALUES ($1, $2, 'CALLS', 5)",
                    tx,
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
        await credit_purchase(purchase(f"cus_{secrets.token_hex(4)}"), pool)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            async with pool.acquire() as conn:
                await conn.execute(statement)
