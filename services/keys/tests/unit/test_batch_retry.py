"""A batch that raced a rotation runs again, a bounded number of times.

consume_batch() refuses to consume a key it did not lock with a serialization failure
(migration 007); the real race is forced in the integration tests. Here the statement is
replaced by a fake that fails as often as told.
"""

import asyncpg
import pytest

from tollgate_keys import batcher as batcher_module
from tollgate_keys.batcher import ATTEMPTS, Batcher, Request


class FakePool:
    async def acquire(self) -> object:
        return object()

    async def release(self, _conn: object) -> None:
        pass


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


def a_call() -> Request:
    return Request(key_hash=b"k", units=3, route=None, method=None, status=None)


async def consume_once(monkeypatch: pytest.MonkeyPatch, database: RacingDatabase) -> batcher_module.Consumed:
    monkeypatch.setattr(batcher_module, "_consume_and_record", database.consume_and_record)
    batcher = Batcher(FakePool, workers=1)  # type: ignore[arg-type]
    batcher.start()
    try:
        return await batcher.consume(a_call())
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
