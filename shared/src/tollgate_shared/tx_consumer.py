"""A Kafka consumer whose effects and offsets commit in one PostgreSQL transaction.

For high-rate topics (usage), one transaction per record would make PostgreSQL the
bottleneck and a per-record idempotency row would double the writes. Instead each
batch of one partition is applied in one transaction that also stores the partition's
next offset; on (re)assignment the consumer seeks to the stored offset. A crash at any
point either commits the batch and its offset together or neither, so the batch is
neither lost nor applied twice. Kafka's own committed offsets are updated too, but
only for lag monitoring: they are never trusted on start.

Records that do not parse go to the topic's DLQ and are skipped (their offsets still
advance); a batch whose transaction fails is retried with backoff, never skipped.

Throughput: a few batches are in flight at once (`depth`), so fetching and parsing go
on while earlier batches wait for PostgreSQL; a partition's batches still commit one
after another, in offset order.
"""

import asyncio
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from . import consumer_metrics
from .contracts import Topic
from .faults import armed, pause_point
from .logging import get_logger

log = get_logger(__name__)
E = TypeVar("E")
# A batch's database work grows with the keys and windows it touches, not with its
# records, so large batches are cheaper per record (measured in bench-usage).
BATCH_RECORDS = 20_000
ApplyBatch = Callable[[asyncpg.Connection, list[E]], Awaitable[None]]


class TransactionalConsumer(Generic[E]):
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: Topic,
        group_id: str,
        pool: asyncpg.Pool,
        parse: Callable[[bytes], E],
        apply: ApplyBatch[E],
        max_records: int = BATCH_RECORDS,
        depth: int = 2,
    ) -> None:
        self._bootstrap, self._topic, self._group = bootstrap_servers, topic, group_id
        self._pool, self._parse, self._apply, self._max = pool, parse, apply, max_records
        self._depth = depth  # partition batches applying at once
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._max,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._consumer.subscribe([self._topic.name], listener=_SeekToStored(self))
        self._dlq = AIOKafkaProducer(bootstrap_servers=self._bootstrap, enable_idempotence=True)
        await self._dlq.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"tx-consumer-{self._topic.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
        if self._dlq:
            await self._dlq.stop()

    async def stored_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets "
                "WHERE consumer = $1 AND topic = $2 AND partition = ANY($3::int[])",
                self._group,
                self._topic.name,
                list(partitions),
            )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def _run(self) -> None:
        assert self._consumer is not None
        # Each partition's batches apply strictly in order, each once the one before it
        # has committed. Other partitions' batches, and the next fetch, go on meanwhile:
        # a batch spends much of its time waiting for PostgreSQL (round trips, the
        # commit's WAL flush), and the process would otherwise sit idle. Partitions are
        # independent: each has its own offsets and, keyed by account, its own accounts.
        latest: dict[TopicPartition, asyncio.Task[None]] = {}
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                for tp, records in (await self._consumer.getmany(timeout_ms=200, max_records=self._max)).items():
                    # Parsed at once, so the Kafka records are garbage before the batch
                    # waits its turn: kept alive, tens of thousands of them survive into
                    # the old generation and every full collection walks them.
                    batch = await self._parse_or_dead_letter(records)
                    task = asyncio.create_task(self._apply_in_turn(latest.get(tp), tp, batch))
                    latest[tp] = task
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                while len(in_flight) > self._depth:  # bounds what is held in memory
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _apply_in_turn(self, previous: asyncio.Task[None] | None, tp: TopicPartition, batch: "_Batch[E]") -> None:
        if previous:
            await previous
        # Never skipped: a batch that cannot commit holds its partition up, so nothing
        # after it applies out of order.
        await _until_done(
            partial(self._apply_batch, tp, batch),
            "batch failed; retrying",
            retried=consumer_metrics.RETRIED.labels(tp.topic, self._group).inc,
            topic=tp.topic,
            partition=tp.partition,
        )
        assert self._consumer is not None
        with suppress(Exception):  # only for lag monitoring; the database holds the truth
            await self._consumer.commit({tp: batch.next_offset})

    async def _apply_batch(self, tp: TopicPartition, batch: "_Batch[E]") -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Lock this partition's offset row: after a rebalance the previous owner may
            # still be finishing a batch; whoever commits second sees the first's offset
            # and skips what it already applied.
            stored = await conn.fetchval(
                "SELECT next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2 AND partition = $3 "
                "FOR UPDATE",
                self._group,
                tp.topic,
                tp.partition,
            )
            fresh = batch.events if stored is None else batch.events[bisect_left(batch.offsets, stored) :]
            if fresh:
                await self._apply(conn, fresh)
            await conn.execute(
                "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = GREATEST("
                "  consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
                self._group,
                tp.topic,
                tp.partition,
                batch.next_offset,
            )
        self.applied += len(fresh)
        consumer_metrics.CONSUMED.labels(tp.topic, self._group).inc(len(fresh))
        await pause_point("tx_consumer.after_commit", batch.keys)

    async def _parse_or_dead_letter(self, records: list[ConsumerRecord]) -> "_Batch[E]":
        """The records that parse, in offset order; the others go to the DLQ."""
        parse = self._parse
        keys = " ".join({(r.key or b"").decode() for r in records}) if armed() else ""
        try:  # the usual case, in one pass
            return _Batch([r.offset for r in records], [parse(r.value) for r in records], records[-1].offset + 1, keys)
        except (ValidationError, ValueError):
            pass
        offsets: list[int] = []
        events: list[E] = []
        for record in records:
            try:
                event = parse(record.value)
            except (ValidationError, ValueError) as exc:
                await _until_done(partial(self._dead_letter, record, exc), "dead-lettering failed; retrying")
                continue
            offsets.append(record.offset)
            events.append(event)
        return _Batch(offsets, events, records[-1].offset + 1, keys)

    async def _dead_letter(self, record: ConsumerRecord, error: Exception) -> None:
        assert self._dlq is not None
        await self._dlq.send_and_wait(
            self._topic.dlq,
            record.value,
            key=record.key,
            headers=[
                ("dlq_error", str(error)[:2000].encode()),
                ("dlq_source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ],
        )
        consumer_metrics.DEAD_LETTERED.labels(record.topic, self._group).inc()
        log.error("record dead-lettered", offset=record.offset, partition=record.partition)


@dataclass(frozen=True)
class _Batch(Generic[E]):
    """One partition's parsed records: what a transaction needs, and no Kafka records."""

    offsets: list[int]
    events: list[E]
    next_offset: int  # past the last record, parsed or not
    keys: str  # the records' keys, for crash tests' pause points; empty unless armed


async def _until_done(
    action: Callable[[], Awaitable[None]],
    failure: str,
    retried: Callable[[], None] = lambda: None,
    **context: object,
) -> None:
    """Run `action` until it succeeds, backing off up to 10 s between attempts."""
    delay = 0.2
    while True:
        try:
            return await action()
        except Exception:
            retried()
            log.exception(failure, **context)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: "TransactionalConsumer[Any]") -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._owner._consumer
        assert consumer is not None
        stored = await self._owner.stored_offsets([tp.partition for tp in assigned])
        for tp in assigned:
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned), stored=stored)
