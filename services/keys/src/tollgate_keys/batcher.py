"""Group commit for consuming validations.

A validation must be durable before it is answered, and one commit per validation caps
a process at PostgreSQL's commit rate. The batcher gathers the validations that arrive
while the previous batch commits and runs them together: one call to consume_many(),
one pipelined insert of their usage events into the outbox, one commit; then every
caller gets its own answer. Under light load a batch is a single request, so latency
does not wait for company.
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import asyncpg

from tollgate_shared.contracts import UsageRecorded
from tollgate_shared.contracts.topics import USAGE_RECORDED
from tollgate_shared.logging import get_logger

from .repo import Consumed

log = get_logger(__name__)


@dataclass(frozen=True)
class Request:
    key_hash: bytes
    units: int
    route: str | None
    method: str | None
    status: int | None


class Batcher:
    def __init__(self, pool: Callable[[], asyncpg.Pool], *, max_batch: int = 256, workers: int = 2) -> None:
        self._pool, self._max, self._workers = pool, max_batch, workers
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[Consumed]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"validate-batcher-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def consume(self, request: Request) -> Consumed:
        future: asyncio.Future[Consumed] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._commit([r for r, _ in batch])
            except Exception as exc:
                log.exception("validation batch failed", size=len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _commit(self, requests: list[Request]) -> list[Consumed]:
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT * FROM consume_many($1::bytea[], $2::bigint[], $3::boolean[])",
                [r.key_hash for r in requests],
                [r.units for r in requests],
                [True] * len(requests),
            )
            results: list[Consumed | None] = [None] * len(requests)
            for row in rows:
                fields = dict(row)
                position = fields.pop("idx") - 1
                results[position] = Consumed(**fields)
            usage = [(req, res) for req, res in zip(requests, results, strict=True) if res and res.outcome == "ok"]
            if usage:
                # The usage events commit with the quota changes: recorded before anyone is answered.
                await conn.executemany(
                    "INSERT INTO outbox (topic, key, event_id, payload) VALUES ($1, $2, $3, $4)",
                    [_outbox_row(req, res) for req, res in usage],
                )
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]


def _outbox_row(req: Request, res: Consumed) -> tuple[str, str, object, object]:
    assert res.key_id is not None
    assert res.account_id is not None
    event = UsageRecorded(
        key_id=res.key_id,
        account_id=res.account_id,
        plan=res.plan or "",
        billing=res.billing,  # type: ignore[arg-type]
        units=req.units,
        key_units_total=res.quota_used,
        route=req.route,
        method=req.method,
        status=req.status,
    )
    return USAGE_RECORDED.name, res.account_id, event.event_id, event.model_dump(mode="json")
