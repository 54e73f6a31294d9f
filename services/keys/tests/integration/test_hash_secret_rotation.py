"""Rotating the keys hash secret in place, against real PostgreSQL: a key stored under the
previous secret keeps working, is moved to the current one the first time it is used,
and then needs the previous secret no more."""

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from tollgate_keys import keyformat, repo
from tollgate_keys.batcher import Batcher
from tollgate_keys.handlers import KeySecrets, Validate, Verdict, find_live_key, validate_key

from .helpers import SECRETS, a_key

OLD = replace(SECRETS, hash_secret=b"the-hash-secret-before-rotation")
ROTATING = replace(OLD, hash_secret=b"the-hash-secret-after-rotation", previous_hash_secrets=(OLD.hash_secret,))
ROTATED = replace(ROTATING, previous_hash_secrets=())  # the previous secret dropped


@pytest.fixture
async def batcher(pool: asyncpg.Pool) -> AsyncIterator[Batcher]:
    b = Batcher(lambda: pool)
    b.start()
    yield b
    await b.stop()


async def stored(pool: asyncpg.Pool) -> list[tuple[bytes, str]]:
    async with pool.acquire() as conn:
        return [tuple(r.values()) for r in await conn.fetch("SELECT key_hash, hash_secret_id FROM keys ORDER BY id")]  # type: ignore[misc]


async def validated(pool: asyncpg.Pool, batcher: Batcher, under: KeySecrets, key: str, consume: bool = True) -> Verdict:
    return await validate_key(Validate(key, 1, consume), pool, under, batcher)


async def test_a_key_under_the_previous_secret_works_and_moves_to_the_current_one(
    pool: asyncpg.Pool, batcher: Batcher
) -> None:
    key = await a_key(pool, quota=None, under=OLD)
    assert (await validated(pool, batcher, ROTATING, key)).valid
    assert await stored(pool) == [(ROTATING.hashed(key), ROTATING.hash_secret_id)]
    # Moved: the previous secret is needed no more, and the quota counted the call once.
    verdict = await validated(pool, batcher, ROTATED, key)
    assert verdict.valid and verdict.state is not None and verdict.state.quota_used == 2


async def test_a_check_and_a_lookup_move_the_key_too(pool: asyncpg.Pool, batcher: Batcher) -> None:
    checked, looked_up = await a_key(pool, quota=None, under=OLD), await a_key(pool, quota=None, under=OLD)
    assert (await validated(pool, batcher, ROTATING, checked, consume=False)).valid
    async with pool.acquire() as conn:
        found = await find_live_key(conn, ROTATING, looked_up)
    assert found is not None
    for key in (checked, looked_up):
        assert (await validated(pool, batcher, ROTATED, key)).valid


async def test_a_key_not_moved_before_the_previous_secret_is_dropped_is_unknown(
    pool: asyncpg.Pool, batcher: Batcher
) -> None:
    key = await a_key(pool, quota=None, under=OLD)
    assert (await validated(pool, batcher, ROTATED, key)).reason == "not_found"
    assert await stored(pool) == [(OLD.hashed(key), OLD.hash_secret_id)]


async def test_an_unknown_key_moves_nothing(pool: asyncpg.Pool, batcher: Batcher) -> None:
    key = await a_key(pool, quota=None, under=OLD)
    assert (await validated(pool, batcher, ROTATING, keyformat.generate("test"))).reason == "not_found"
    assert await stored(pool) == [(OLD.hashed(key), OLD.hash_secret_id)]


async def test_the_live_keys_under_each_secret_are_counted(pool: asyncpg.Pool, batcher: Batcher) -> None:
    used, unused = await a_key(pool, quota=None, under=OLD), await a_key(pool, quota=None, under=OLD)
    await validated(pool, batcher, ROTATING, used)
    async with pool.acquire() as conn:
        counts = await repo.live_keys_by_secret(conn)
    assert counts == {ROTATING.hash_secret_id: 1, OLD.hash_secret_id: 1}
    assert unused  # still under the previous secret: not yet time to drop it
