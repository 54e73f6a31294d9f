"""Group commit for consuming validations.

A validation must be durable before it is answered, and one commit per validation caps
a process at PostgreSQL's commit rate. The batcher gathers the validations that arrive
while the previous batch commits and runs them together: one call to
consume_and_record(), which consumes and writes the accepted calls' usage events to the
outbox in one statement, so one round trip and one commit; then every caller gets its
own answer. Under light load a batch is a single request, so latency does not wait for
company. Each worker keeps its own connection: a pool's acquire and release cost a
round trip of their own (the connection reset) on every batch.

One batch is in flight at a time unless `backlog` requests wait; then a second worker
sends one too. Under light load a second batch shares the cores and the WAL flush with
the first and slows both; once requests queue, the batch in flight is slow, and a
second one raises throughput and shortens the queue (BENCHMARKS.md, bench-keys).
"""

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import asyncpg

from tollgate_shared.logging import get_logger

from . import metrics
from .repo import Consumed, decided

log = get_logger(__name__)


@dataclass(frozen=True)
class Request:
    key_hash: bytes
    units: int
    route: str | None
    method: str | None
    status: int | None


class Overloaded(Exception):
    """More validations wait than the process should hold: answered 503, retry later."""


class Batcher:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        max_batch: int = 256,
        workers: int = 2,
        backlog: int = 2,
        max_waiting: int = 10_000,
    ) -> None:
        self._pool, self._max, self._workers, self._backlog = pool, max_batch, workers, backlog
        self._max_waiting = max_waiting
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[Consumed]]] = asyncio.Queue()
        self._backlogged = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(first=i == 0), name=f"validate-batcher-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def consume(self, request: Request) -> Consumed:
        """The request's decision, once its batch committed. Refused at once (Overloaded)
        when so many wait that an answer would come too late to be worth waiting for."""
        if self._queue.qsize() >= self._max_waiting:
            metrics.REJECTED.labels("503").inc()
            raise Overloaded
        future: asyncio.Future[Consumed] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((request, future))
        if self._queue.qsize() >= self._backlog:
            self._backlogged.set()
        return await future

    async def _next_batch(self, first: bool) -> list[tuple[Request, asyncio.Future[Consumed]]]:
        if first:
            batch = [await self._queue.get()]
        else:
            # A second batch in flight pays only when a backlog waits: under light load
            # it shares the two cores and the WAL flush with the first and slows both.
            while self._queue.qsize() < self._backlog:
                self._backlogged.clear()
                await self._backlogged.wait()
            batch = [self._queue.get_nowait()]
        while len(batch) < self._max and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self, first: bool) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while True:
                batch = await self._next_batch(first)
                try:
                    if conn is None:
                        conn = await self._pool().acquire()
                    results = await _commit(conn, [r for r, _ in batch])
                except Exception as exc:
                    log.exception("validation batch failed", size=len(batch))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if conn is not None:
                        # The connection may be broken; the pool checks it and replaces it.
                        await self._pool().release(conn)
                        conn = None
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            if conn is not None:
                await self._pool().release(conn)


# A batch that finds a key it did not lock (one rotated while the batch waited for it)
# fails without writing anything and runs again; the second run locks the successor.
ATTEMPTS = 5


async def _commit(conn: asyncpg.Connection, requests: list[Request]) -> list[Consumed]:
    metrics.BATCH_SIZE.observe(len(requests))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            started = time.perf_counter()
            rows = await _consume_and_record(conn, requests)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            break
        except asyncpg.exceptions.SerializationError:
            if attempt == ATTEMPTS:
                raise
            log.info("validation batch raced a rotation; running it again", size=len(requests), attempt=attempt)
    results: list[Consumed | None] = [None] * len(requests)
    for row in rows:
        position, result = decided(row)
        results[position] = result
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


async def _consume_and_record(conn: asyncpg.Connection, requests: list[Request]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM consume_and_record($1::bytea[], $2::bigint[], $3::text[], $4::text[], $5::int[])",
        [r.key_hash for r in requests],
        [r.units for r in requests],
        [r.route for r in requests],
        [r.method for r in requests],
        [r.status for r in requests],
    )
    return rows
