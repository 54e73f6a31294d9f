"""Transactional outbox: events are rows written with the change, relayed to Kafka after.

Writing the row in the same transaction as the business change means nothing is
published for a rolled-back change, and nothing committed is left unpublished. The
relay publishes at least once; consumers deduplicate on `event_id`. Published rows are
kept for `retention` so that adding the same event id again is a no-op: one fact, one
message, even when several upstream messages describe it. Rows of the topics in
`forget` (`Topic.keep_published` false: ids new for every event) are deleted once
published instead.
"""

import asyncio
import collections
import functools
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter, Gauge

from .contracts import Event, Topic
from .faults import pause_point
from .logging import get_logger

log = get_logger(__name__)
DEFAULT_RETENTION = timedelta(days=7)

PUBLISHED = Counter("tollgate_outbox_published_total", "Outbox events Kafka acknowledged, by topic.", ["topic"])
OLDEST_WAITING = Gauge(
    "tollgate_outbox_oldest_waiting_seconds",
    "How long the oldest unpublished event had waited when this process's relay last looked: 0 when none "
    "waited, or when another replica held the relay lock. Steadily rising: events are not reaching Kafka.",
)


def _checked(topic: Topic, event: Event) -> Event:
    if not topic.carries(event):
        raise TypeError(f"{type(event).__name__} is not a message of {topic.name}")
    return event


async def add(conn: asyncpg.Connection, topic: Topic, key: str, event: Event) -> None:
    """Queue `event` for `topic`, keyed by account id. Call inside the change's transaction."""
    _checked(topic, event)
    await conn.execute(
        "INSERT INTO outbox (topic, key, event_id, payload) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
        topic.name,
        key,
        event.event_id,
        event.model_dump(mode="json"),
    )


async def add_many(conn: asyncpg.Connection, items: list[tuple[Topic, str, Event]]) -> None:
    """`add` for many events in one statement: a batch's events are one row set, not a
    statement per row (at thousands of transfers a second, per-row statements cost
    PostgreSQL and the driver more than the rows)."""
    if items:
        await conn.execute(
            "INSERT INTO outbox (topic, key, event_id, payload) "
            "SELECT t, k, e, p::jsonb FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[]) AS x(t, k, e, p) "
            "ON CONFLICT (event_id) DO NOTHING",
            [topic.name for topic, _, _ in items],
            [key for _, key, _ in items],
            [_checked(topic, event).event_id for topic, _, event in items],
            [event.model_dump_json() for _, _, event in items],
        )


class OutboxRelay:
    """Moves outbox rows to Kafka in id order, then marks them published.

    One relay per schema publishes at a time (an advisory lock taken per batch), so
    rows written in order for one key reach their partition in that order even when
    several replicas run. A row is marked only after Kafka acknowledged it. The relay
    uses an aiokafka producer of its own (idempotent, acks=all) and sends the stored
    JSON text as it is: this runs once per event on every service's hot path.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        topics: frozenset[str] | None = None,
        batch_size: int = 500,
        idle_sleep: float = 0.05,
        retention: timedelta = DEFAULT_RETENTION,
        forget: frozenset[str] = frozenset(),
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._topics = topics  # what this service declares it publishes; None: anything
        self._batch_size = batch_size
        self._idle_sleep = idle_sleep
        self._retention = retention
        self._forget = sorted(forget)
        self._last_purge = 0.0
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop, publishing first what waits (for up to `drain_s`): what the last requests
        and batches wrote reaches Kafka now, not when another replica's relay finds it."""
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        try:
            async with asyncio.timeout(drain_s):
                while await self.relay_once():
                    pass
        except Exception as exc:  # Kafka away, or out of time: the rows wait, nothing is lost
            log.info("outbox not drained at stop; another relay will publish the rest", error=repr(exc))

    async def _run(self) -> None:
        while True:
            try:
                moved = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if moved < self._batch_size:
                await self._purge_if_due()
                await asyncio.sleep(self._idle_sleep)

    async def _purge_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < 60:
            return
        self._last_purge = now
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE published_at < now() - $1::interval", self._retention)

    async def relay_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"):
                OLDEST_WAITING.set(0)
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, event_id, payload::text AS payload, payload->>'event_type' AS event_type, "
                "  payload->>'correlation_id' AS correlation_id, "
                "  extract(epoch FROM clock_timestamp() - created_at)::float8 AS waited_s "
                "FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
                self._batch_size,
            )
            # Measured by the database's clock on both ends: replicas' clocks may differ.
            OLDEST_WAITING.set(rows[0]["waited_s"] if rows else 0)
            if not rows:
                return 0
            await self._publish(rows)
            # Kafka has the batch; a crash before the commit below re-publishes it (same
            # event ids, so consumers' dedup keeps it one effect): at-least-once, by design.
            await pause_point("outbox.after_publish")
            await conn.execute(
                "WITH forgotten AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND topic = ANY($2::text[])) "
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND topic <> ALL($2::text[])",
                [r["id"] for r in rows],
                self._forget,
            )
        self.published += len(rows)
        for topic, count in collections.Counter(r["topic"] for r in rows).items():
            PUBLISHED.labels(topic).inc(count)
        return len(rows)

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        """Send `rows` as record batches, each partition's in row order, and wait for Kafka.

        The partition is the one a keyed send would choose (Kafka's murmur2 of the key),
        so per-account order holds; building the batches here costs a fraction
        of one `producer.send()` per row, and this runs once per event on every
        service's hot path."""
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        for row in rows:
            topic, key = row["topic"], row["key"].encode()
            if self._topics is not None and topic not in self._topics:
                raise ValueError(f"outbox row {row['id']} is for {topic}, which this service does not publish")
            if topic not in partitions:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            choices = partitions[topic]
            queue = batches.setdefault((topic, choices[_key_hash(key) % len(choices)]), [])
            record = relay_record(key, row["payload"], row["event_type"] or "", row["event_id"], row["correlation_id"])
            if not queue or queue[-1].append(**record) is None:
                queue.append(self._producer.create_batch())
                if queue[-1].append(**record) is None:
                    raise ValueError(f"outbox row {row['id']} does not fit in a Kafka batch")
        sent = [
            await self._producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), queue in batches.items()
            for batch in queue
        ]
        await asyncio.gather(*sent)


def relay_record(
    key: bytes, payload: str, event_type: str, event_id: object, correlation_id: str | None = None
) -> dict[str, Any]:
    """One outbox row as the relay appends it to a record batch: the stored JSON as the
    value, and the headers consumers route, deduplicate and trace on."""
    headers = [
        ("content-type", b"application/json"),
        ("event_type", event_type.encode()),
        ("event_id", str(event_id).encode()),
    ]
    if correlation_id:
        headers.append(("correlation_id", correlation_id.encode()))
    return {"timestamp": None, "key": key, "value": payload.encode(), "headers": headers}


@functools.lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python; keys (account ids) repeat, so it runs once each.
    return int(murmur2(key)) & 0x7FFFFFFF


def outbox_producer(bootstrap_servers: str, client_id: str, **options: Any) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried send never duplicates on the broker.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # The relay builds its own batches (OutboxRelay._publish): fewer, larger ones.
        max_batch_size=256 * 1024,
        **options,
    )
