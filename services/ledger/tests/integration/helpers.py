"""Helpers for booking against a real PostgreSQL, on a private schema per test."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import uuid4

import asyncpg

from tollgate_ledger import repo
from tollgate_ledger.book import Book
from tollgate_ledger.domain import customer_credits
from tollgate_shared.contracts import Money, PaymentSucceeded, UsageIntake, UsageRecorded, parse_usage

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
T = TypeVar("T")


async def in_book(pool: asyncpg.Pool, work: Callable[[Book], Awaitable[T]], threshold: int = 0) -> T:
    async with pool.acquire() as conn, conn.transaction():
        return await work(await Book.open(conn, low_balance_threshold=threshold))


def purchase(account: str, credits: int = 10_000, amount: int = 2500, session: str | None = None) -> PaymentSucceeded:
    session = session or f"cs_{uuid4().hex[:10]}"
    return PaymentSucceeded(
        account_id=account,
        customer_email="a@example.com",
        plan="professional",
        product_name="Pro",
        credits=credits,
        amount=Money(amount_minor=amount, currency="usd"),
        checkout_session_id=session,
        payment_intent_id=f"pi_{session}",
    )


def usage(account: str, units: int, *, key: str | None = None, total: int | None = None, **kw: Any) -> UsageIntake:
    record = UsageRecorded(
        key_id=key or uuid4(),  # type: ignore[arg-type]
        account_id=account,
        plan="professional",
        billing=kw.pop("billing", "prepaid"),
        units=units,
        key_units_total=total,
        **kw,
    )
    return parse_usage(record.model_dump_json())


async def credits_of(pool: asyncpg.Pool, account: str) -> int:
    async with pool.acquire() as conn:
        b = await repo.balance(conn, customer_credits(account).id)
    return b.current if b else 0


async def scalar(pool: asyncpg.Pool, sql: str, *args: object) -> Any:
    async with pool.acquire() as conn:
        return await conn.fetchval(sql, *args)
