"""Group commit for transfers, posts and voids through HTTP.

Every write takes the journal's chain lock for its transaction (book.py), so one commit
per transfer caps the API at PostgreSQL's commit rate: about 150 transfers a second
here, however many clients. The coalescer gathers the moves that arrive while the
previous group commits and books them in one Book: one lock, one flush, one commit;
then each caller gets its own answer. A caller is answered only after its move
committed. A refused move (an overdraft, an unknown account, a posted hold) refuses only
itself, as in any Book; if the group fails for another reason, each of its moves is
tried again in a transaction of its own, so a move that cannot be booked fails alone.
Under light load a group is a single move, so latency does not wait for company.

Within a group moves are booked in the order they arrived, each seeing the ones before
it, so the journal's order, the hash chain and idempotency by transfer id are the same
as if each had its own transaction.
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import asyncpg

from tollgate_shared.logging import get_logger

from . import metrics
from .book import Book
from .domain import Rejected
from .handlers import post_hold, transfer_many, void_hold
from .holds import Outcome, Transfer

log = get_logger(__name__)


@dataclass(frozen=True)
class Place:
    """A transfer, posted at once or held (pending)."""

    transfer: Transfer


@dataclass(frozen=True)
class Post:
    """Post a hold, in full (amount None) or in part."""

    hold_id: str
    amount: int | None


@dataclass(frozen=True)
class Void:
    hold_id: str


Move = Place | Post | Void
Result = Outcome | bool | Rejected  # created/exists for a Place; changed or not for a Post or Void


class Overloaded(Exception):
    """More moves wait than can be answered in reasonable time: 503, retry later."""


class Coalescer:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        threshold: int,
        *,
        max_group: int = 512,
        max_waiting: int = 20_000,
        workers: int = 1,
    ) -> None:
        self._pool, self._threshold, self._max, self._max_waiting = pool, threshold, max_group, max_waiting
        self._workers = workers
        self._queue: asyncio.Queue[tuple[Move, asyncio.Future[Result]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"transfer-coalescer-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def book(self, move: Move) -> Outcome | bool:
        """Book `move` with whatever else is waiting; its outcome once committed. Raises
        Rejected if the ledger refuses it, Overloaded if too many wait."""
        if self._queue.qsize() >= self._max_waiting:
            raise Overloaded
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((move, future))
        result = await future
        if isinstance(result, Rejected):
            raise result
        return result

    async def _run(self) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while True:
                group = [await self._queue.get()]
                while len(group) < self._max and not self._queue.empty():
                    group.append(self._queue.get_nowait())
                moves = [move for move, _ in group]
                try:
                    if conn is None:
                        conn = await self._pool().acquire()
                    results = await self._commit(conn, moves)
                except Exception as exc:
                    if conn is not None:
                        await self._pool().release(conn)  # it may be broken; the pool checks it
                        conn = None
                    if len(group) == 1:
                        if not group[0][1].done():
                            group[0][1].set_exception(exc)
                        continue
                    log.warning("transfer group failed; booking its moves one by one", size=len(group), error=repr(exc))
                    await self._one_by_one(group)
                    continue
                metrics.MOVES_PER_COMMIT.observe(len(group))
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            if conn is not None:
                await self._pool().release(conn)

    async def _one_by_one(self, group: list[tuple[Move, "asyncio.Future[Result]"]]) -> None:
        for move, future in group:
            try:
                async with self._pool().acquire() as conn:
                    (result,) = await self._commit(conn, [move])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(result)

    async def _commit(self, conn: asyncpg.Connection, moves: list[Move]) -> list[Result]:
        async with conn.transaction():
            return await book_moves(await Book.open(conn, low_balance_threshold=self._threshold), moves)


async def book_moves(book: Book, moves: list[Move]) -> list[Result]:
    """Book moves in order in one Book: runs of transfers together, each post or void alone."""
    results: list[Result] = []
    i = 0
    while i < len(moves):
        move = moves[i]
        if isinstance(move, Place):
            end = i
            while end < len(moves) and isinstance(moves[end], Place):
                end += 1
            results += await transfer_many(book, [m.transfer for m in moves[i:end] if isinstance(m, Place)])
            i = end
            continue
        try:
            if isinstance(move, Post):
                results.append(await post_hold(book, move.hold_id, move.amount))
            else:
                results.append(await void_hold(book, move.hold_id))
        except Rejected as exc:
            book.discard()
            results.append(exc)
        i += 1
    return results
