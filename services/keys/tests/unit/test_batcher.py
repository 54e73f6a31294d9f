"""When the batcher sends a second batch to PostgreSQL (only while a backlog waits), and
how often it runs a batch again that raced a rotation (a bounded number of times).

The database round trip is replaced by fakes: a slow one that records how many batches
are in flight at once, and one that fails with a serialization failure as often as told,
as consume_batch() does for a key it did not lock (migration 007). The real statement,
and the real race, are covered by the integration tests.
"""

import asyncio
from typing import Any

import asyncpg
import pytest

from tollgate_keys import batcher as batcher_module
from tollgate_keys.batcher import ATTEMPTS, Batcher, Request
from tollgate_keys.repo import Consumed


class FakePool:
    async def acquire(self) -> object:
        return object()

    async def release(self, _conn: object) -> None:
        pass


class SlowDatabase:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.in_flight, self.most_in_flight = seconds, 0, 0
        self.batches: list[int] = []

    async def commit(self, _conn: Any, requests: list[Request]) -> list[Consumed]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.batches.append(len(requests))
        await asyncio.sleep(self.seconds)
        self.in_flight -= 1
        return [Consumed("ok", None, None, None, None, None, r.units, None, None, None, None) for r in requests]


def request(units: int) -> Request:
    return Request(key_hash=b"k", units=units, route=None, method=None, status=None)


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> SlowDatabase:
    db = SlowDatabase(seconds=0.02)
    monkeypatch.setattr(batcher_module, "_commit", db.commit)
    return db


async def test_light_load_keeps_one_batch_in_flight(database: SlowDatabase) -> None:
    batcher = Batcher(FakePool, workers=2, backlog=8)  # type: ignore[arg-type]
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.consume(request(1)))
        await asyncio.sleep(0.005)  # the first batch is in flight
        # Fewer arrive behind it than the backlog: they wait for it, then go as one batch.
        rest = await asyncio.gather(*(batcher.consume(request(n)) for n in range(2, 7)))
        answers = [await first, *rest]
    finally:
        await batcher.stop()
    assert [a.quota_used for a in answers] == [1, 2, 3, 4, 5, 6]  # each caller gets its own answer
    assert database.most_in_flight == 1
    assert database.batches == [1, 5]


async def test_a_backlog_puts_a_second_batch_in_flight(database: SlowDatabase) -> None:
    batcher = Batcher(FakePool, workers=2, backlog=8)  # type: ignore[arg-type]
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.consume(request(1)))
        await asyncio.sleep(0.005)  # the first batch is in flight; now a backlog builds behind it
        rest = await asyncio.gather(*(batcher.consume(request(n)) for n in range(2, 12)))
        answers = [await first, *rest]
    finally:
        await batcher.stop()
    assert [a.quota_used for a in answers] == list(range(1, 12))
    assert database.most_in_flight == 2
    assert database.batches[:2] == [1, 10]


class RacingDatabase:
    def __init__(self, failures: int) -> None:
        self.failures, self.attempts = failures, 0

    async def consume_and_record(self, _conn: object, requests: list[Request]) -> list[dict[str, object]]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise asyncpg.exceptions.SerializationError("key was not locked by this batch")
        return [
            {
                "idx": n + 1,
                "outcome": "ok",
                "key_id": None,
                "account_id": None,
                "plan": None,
                "billing": None,
                "quota_limit": None,
                "quota_used": r.units,
                "expires_at": None,
                "rate_limit": None,
                "rate_remaining": None,
                "rate_reset": None,
            }
            for n, r in enumerate(requests)
        ]


async def consume_once(monkeypatch: pytest.MonkeyPatch, database: RacingDatabase) -> Consumed:
    monkeypatch.setattr(batcher_module, "_consume_and_record", database.consume_and_record)
    batcher = Batcher(FakePool, workers=1)  # type: ignore[arg-type]
    batcher.start()
    try:
        return await batcher.consume(request(3))
    finally:
        await batcher.stop()


async def test_a_batch_that_raced_a_rotation_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    database = RacingDatabase(failures=1)
    answer = await consume_once(monkeypatch, database)
    assert (answer.outcome, answer.quota_used) == ("ok", 3)
    assert database.attempts == 2


async def test_a_batch_that_keeps_racing_fails_its_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    database = RacingDatabase(failures=ATTEMPTS)
    with pytest.raises(asyncpg.exceptions.SerializationError):
        await consume_once(monkeypatch, database)
    assert database.attempts == ATTEMPTS
