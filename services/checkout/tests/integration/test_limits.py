"""Anonymous checkouts counted in PostgreSQL, per client address and per email."""

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest

from tollgate_checkout.limits import Limits, admit_anonymous
from tollgate_shared.http import ApiError

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("checkout")


def someone() -> str:
    return f"x+{secrets.token_hex(4)}@example.com"


async def test_an_address_gets_its_fill_then_429_with_retry_after(pool: asyncpg.Pool) -> None:
    limits = Limits(per_address=3, per_email=100)
    for _ in range(3):
        await admit_anonymous(pool, limits, "203.0.113.7", someone())
    with pytest.raises(ApiError) as refused:
        await admit_anonymous(pool, limits, "203.0.113.7", someone())
    assert (refused.value.status, refused.value.code) == (429, "too_many_checkouts")
    assert refused.value.headers is not None
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 3601
    await admit_anonymous(pool, limits, "203.0.113.8", someone())  # another address is its own


async def test_an_email_is_counted_whatever_its_case_and_address(pool: asyncpg.Pool) -> None:
    limits = Limits(per_address=100, per_email=2)
    email = someone()
    await admit_anonymous(pool, limits, "198.51.100.1", email)
    await admit_anonymous(pool, limits, "198.51.100.2", email.upper())
    with pytest.raises(ApiError, match="email"):
        await admit_anonymous(pool, limits, "198.51.100.3", email)


async def test_replicas_counting_at_once_admit_no_more_than_the_limit(pool: asyncpg.Pool) -> None:
    limits = Limits(per_address=10, per_email=1000)

    async def attempt() -> bool:
        try:
            await admit_anonymous(pool, limits, "192.0.2.9", someone())
            return True
        except ApiError:
            return False

    admitted = await asyncio.gather(*(attempt() for _ in range(30)))
    assert sum(admitted) == 10


async def test_a_new_window_starts_afresh(pool: asyncpg.Pool) -> None:
    limits = Limits(per_address=1, per_email=100, window=timedelta(seconds=1))
    await admit_anonymous(pool, limits, "192.0.2.10", someone())
    with pytest.raises(ApiError):
        await admit_anonymous(pool, limits, "192.0.2.10", someone())
    await asyncio.sleep(1.1)
    await admit_anonymous(pool, limits, "192.0.2.10", someone())
    async with pool.acquire() as conn:  # and the old windows are gone
        assert await conn.fetchval("SELECT count(DISTINCT window_start) FROM checkout_attempts") == 1
