"""The one way Tollgate consumes Kafka: a partition's batch and its next offset commit in
one PostgreSQL transaction.

Every consumer of every service runs on this class. A batch of one partition is applied
in one transaction that also stores the partition's next offset (`consumer_offsets`);
on (re)assignment the consumer seeks to the stored offset. A crash at any point either
commits the batch and its offset together or neither, so nothing is lost or applied
twice, and one transaction per batch (not per record) keeps PostgreSQL off the critical
path at usage rates. Kafka's own committed offsets are updated too, but only for lag
monitoring: they are never trusted on start.

Why not FastStream subscribers: they commit offsets to Kafka, and offer no place to
store them in the effect's transaction and seek to them when partitions are assigned;
their batches also mix partitions, where ordering and offsets are per partition.

Failures:
- a record that does not parse breaks the contract: dead-lettered at once, skipped;
- a transient failure (see `errors.is_transient`) is retried with backoff up to 10 s
  for as long as it takes; the partition waits, nothing is dead-lettered;
- any other failure is permanent for some record of the batch: the batch is split in
  halves until that record is alone, it goes to `<topic>.dlq` with the error, and the
  rest applies.

A few batches are in flight at once (`depth`), so fetching and parsing go on while
earlier batches wait for PostgreSQL; a partition's batches commit one after another.
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
from prometheus_client import Counter
from pydantic import ValidationError

from .contracts import Topic
from .errors import is_transient
from .faults import armed, pause_point
from .logging import get_logger

log = get_logger(__name__)
D = TypeVar("D")
E = TypeVar("E")
# A batch's database work grows with the keys and windows it touches, not with its
# records, so large batches are cheaper per record for high-rate topics.
BATCH_RECORDS = 20_000

CONSUMED = Counter(
    "tollgate_consumed_total", "Records whose batch committed, by topic and consumer group.", ["topic", "group"]
)
DEAD_LETTERED = Counter(
    "tollgate_dead_lettered_total",
    "Records sent to the topic's DLQ instead of being applied: unparseable, or their effect failed permanently.",
    ["topic", "group"],
)
RETRIED = Counter(
    "tollgate_consumer_retries_total",
    "Batches whose transaction failed transiently and was tried again.",
    ["topic", "group"],
)


@dataclass(frozen=True)
class Subscription(Generic[D, E]):
    """What a service consumes: a topic, how its records parse, and the step that applies
    a batch of them inside the consumer's transaction, given the service's dependencies."""

    name: str  # the consumer group is "<service group>.<name>"
    topic: Topic
    parse: Callable[[bytes], E]
    apply: Callable[[D, asyncpg.Connection, list[E]], Awaitable[None]]
    summary: str
    max_records: int = 500
    # The step for records coming back from the DLQ (dlq.py), where it must differ from
    # `apply`: a dead-lettered record was never applied, whatever came after it.
    replay: Callable[[D, asyncpg.Connection, list[E]], Awaitable[None]] | None = None


class TransactionalConsumer(Generic[D, E]):
    def __init__(
        self,
        subscription: Subscription[D, E],
        deps: D,
        *,
        bootstrap_servers: str,
        group_id: str,
        pool: asyncpg.Pool,
        max_records: int | None = None,
        depth: int = 2,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self.subscription, self._topic, self._group = subscription, subscription.topic, group_id
        self._bootstrap, self._kafka_options = bootstrap_servers, kafka_options or {}
        self._pool, self._parse = pool, subscription.parse
        self._apply = partial(subscription.apply, deps)
        self._max = max_records or subscription.max_records
        self._depth = depth  # partition batches applying at once
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        for counter in (CONSUMED, DEAD_LETTERED, RETRIED):
            counter.labels(self._topic.name, group_id)  # exported at 0 from the first scrape

    @property
    def group_id(self) -> str:
        return self._group

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._max,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **self._kafka_options,
        )
        self._consumer.subscribe([self._topic.name], listener=_SeekToStored(self))
        self._dlq = AIOKafkaProducer(bootstrap_servers=self._bootstrap, enable_idempotence=True, **self._kafka_options)
        await self._dlq.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self._group}")

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
        # a batch spends much of its time waiting for PostgreSQL. Partitions are
        # independent: each has its own offsets and, keyed by account, its own accounts.
        latest: dict[TopicPartition, asyncio.Task[None]] = {}
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                for tp, records in (await self._consumer.getmany(timeout_ms=200, max_records=self._max)).items():
                    # Parsed at once, so the Kafka records are garbage before the batch
                    # waits its turn instead of surviving into the old generation.
                    batch = await self._parse_or_dead_letter(tp, records)
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
        await self._settle(tp, batch)
        assert self._consumer is not None
        with suppress(Exception):  # only for lag monitoring; the database holds the truth
            await self._consumer.commit({tp: batch.next_offset})

    async def _settle(self, tp: TopicPartition, batch: "_Batch[E]") -> None:
        """Apply `batch`, or split it until what fails permanently is dead-lettered."""
        try:
            await self._until_not_transient(tp, batch)
            return
        except Exception as exc:
            if len(batch.events) > 1:
                first, second = batch.halves()
                log.warning("batch failed; splitting it to find the record", size=len(batch.events), error=repr(exc))
                await self._settle(tp, first)
                await self._settle(tp, second)
                return
            failure = exc
        log.error("record failed permanently; dead-lettering it", offset=batch.offsets[0], error=repr(failure))
        dead_letter = partial(
            self._dead_letter, tp, batch.keys_raw[0], batch.values[0], batch.offsets[0], repr(failure)
        )
        await _retry_forever(dead_letter)
        await _retry_forever(partial(self._apply_batch, tp, batch.skipped()))

    async def _until_not_transient(self, tp: TopicPartition, batch: "_Batch[E]") -> None:
        delay = 0.2
        while True:
            try:
                return await self._apply_batch(tp, batch)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                RETRIED.labels(tp.topic, self._group).inc()
                log.warning("batch failed transiently; retrying", partition=tp.partition, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

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
        CONSUMED.labels(tp.topic, self._group).inc(len(fresh))
        await pause_point("consumer.after_commit", batch.keys)

    async def _parse_or_dead_letter(self, tp: TopicPartition, records: list[ConsumerRecord]) -> "_Batch[E]":
        """The records that parse, in offset order; the others go to the DLQ."""
        parse = self._parse
        keys = " ".join({f"{tp.topic}:{(r.key or b'').decode()}" for r in records}) if armed() else ""
        values = [r.value for r in records]
        raw_keys = [r.key for r in records]
        try:  # the usual case, in one pass
            events = [parse(value) for value in values]
            return _Batch([r.offset for r in records], events, raw_keys, values, records[-1].offset + 1, keys)
        except (ValidationError, ValueError):
            pass
        kept: list[int] = []
        for i, record in enumerate(records):
            try:
                parse(record.value)
                kept.append(i)
            except (ValidationError, ValueError) as exc:
                failed = partial(self._dead_letter, tp, record.key, record.value, record.offset, f"unparseable: {exc}")
                await _retry_forever(failed)
        return _Batch(
            [records[i].offset for i in kept],
            [parse(values[i]) for i in kept],
            [raw_keys[i] for i in kept],
            [values[i] for i in kept],
            records[-1].offset + 1,
            keys,
        )

    async def _dead_letter(self, tp: TopicPartition, key: bytes | None, value: bytes, offset: int, error: str) -> None:
        assert self._dlq is not None
        await self._dlq.send_and_wait(
            self._topic.dlq,
            value,
            key=key,
            headers=[
                ("dlq_error", error[:2000].encode()),
                ("dlq_source", f"{tp.topic}/{tp.partition}/{offset}".encode()),
                ("dlq_group", self._group.encode()),
            ],
        )
        DEAD_LETTERED.labels(tp.topic, self._group).inc()
        log.error("record dead-lettered", dlq=self._topic.dlq, offset=offset, partition=tp.partition)


@dataclass(frozen=True)
class _Batch(Generic[E]):
    """One partition's parsed records, with their raw bytes for the DLQ: what a
    transaction needs, and no Kafka records."""

    offsets: list[int]
    events: list[E]
    keys_raw: list[bytes | None]  # the records' keys and values as they came, for the DLQ
    values: list[bytes]
    next_offset: int  # past the last record, parsed or not
    keys: str  # "topic:key" of its records, for crash tests' pause points; empty unless armed

    def halves(self) -> "tuple[_Batch[E], _Batch[E]]":
        middle = len(self.events) // 2
        first = _Batch(
            self.offsets[:middle],
            self.events[:middle],
            self.keys_raw[:middle],
            self.values[:middle],
            self.offsets[middle],
            self.keys,
        )
        second = _Batch(
            self.offsets[middle:],
            self.events[middle:],
            self.keys_raw[middle:],
            self.values[middle:],
            self.next_offset,
            self.keys,
        )
        return first, second

    def skipped(self) -> "_Batch[E]":
        """Nothing to apply, only the offset to move past this batch."""
        return _Batch([], [], [], [], self.next_offset, self.keys)


async def _retry_forever(action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` until it succeeds, backing off up to 10 s between attempts: what is
    left to do once a record is judged (dead-letter it, move past it) must not be lost."""
    delay = 0.2
    while True:
        try:
            return await action()
        except Exception:
            log.exception("consumer step failed; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: "TransactionalConsumer[Any, Any]") -> None:
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
