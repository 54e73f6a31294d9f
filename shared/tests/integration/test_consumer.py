"""The one consumer, against real Kafka and PostgreSQL: order and exactly-once with many
batches in flight, its stored offsets, and transient versus permanent failures."""

import asyncio
import json
import random
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from tollgate_shared import dlq
from tollgate_shared.bus import ensure_topics
from tollgate_shared.consumer import Subscription, TransactionalConsumer
from tollgate_shared.contracts import Topic, UsageRecorded
from tollgate_shared.errors import Transient
from tollgate_shared.kafka_reader import read_topic

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
Record = dict[str, Any]
Apply = Callable[[asyncpg.Connection, list[Record]], Awaitable[None]]


def parse(raw: bytes) -> Record:
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("not an object")
    return record


async def produce(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


class Harness:
    """A topic, a private schema with an `applied` table, and consumers of the two."""

    def __init__(self, bootstrap: str, pool: asyncpg.Pool, topic: Topic) -> None:
        self.bootstrap, self.pool, self.topic = bootstrap, pool, topic
        self.group = f"g-{topic.name}"

    def consumer(self, apply: Apply, *, max_records: int = 7, depth: int = 4) -> TransactionalConsumer[None, Record]:
        async def bound(_deps: None, conn: asyncpg.Connection, records: list[Record]) -> None:
            await apply(conn, records)

        subscription = Subscription("test", self.topic, parse, bound, "a test's", max_records=max_records)
        return TransactionalConsumer(
            subscription, None, bootstrap_servers=self.bootstrap, group_id=self.group, pool=self.pool, depth=depth
        )

    async def run_until(self, consumer: TransactionalConsumer[None, Record], applied: int) -> None:
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                while consumer.applied < applied:
                    await asyncio.sleep(0.05)
        finally:
            await consumer.stop()

    async def rows(self) -> list[tuple[str, int]]:
        async with self.pool.acquire() as conn:
            return [(r["account"], r["seq"]) for r in await conn.fetch("SELECT account, seq FROM applied ORDER BY id")]

    def counted(self) -> dict[str, float | None]:
        labels = {"topic": self.topic.name, "group": self.group}
        return {
            name: REGISTRY.get_sample_value(f"tollgate_{name}_total", labels)
            for name in ("consumed", "consumer_retries", "dead_lettered")
        }


@pytest.fixture
async def harness(private_schema: MakePool, kafka_bootstrap: str) -> Harness:
    topic = Topic(f"test.consumer.{secrets.token_hex(4)}", (UsageRecorded,), "a test's", partitions=3)
    await ensure_topics(kafka_bootstrap, (topic,), replicas=1)
    pool = await private_schema("shared")
    async with pool.acquire() as conn:
        # No unique key on purpose: a record applied twice shows as two rows.
        await conn.execute("CREATE TABLE applied (id bigserial, account text, seq int)")
    return Harness(kafka_bootstrap, pool, topic)


async def insert(conn: asyncpg.Connection, records: list[Record]) -> None:
    await conn.executemany("INSERT INTO applied (account, seq) VALUES ($1, $2)", [(r["a"], r["seq"]) for r in records])


def values(accounts: list[str], per_account: int) -> list[tuple[str, bytes]]:
    return [(a, json.dumps({"a": a, "seq": seq}).encode()) for seq in range(per_account) for a in accounts]


async def test_each_partition_applies_in_order_exactly_once_with_batches_in_flight(harness: Harness) -> None:
    accounts = [f"cus_{n}" for n in range(6)]
    sent = values(accounts, 60)
    sent.insert(100, (accounts[0], b"[1, 2]"))  # does not parse: dead-lettered, skipped
    failed_once: set[int] = set()

    async def apply(conn: asyncpg.Connection, records: list[Record]) -> None:
        # Slow, uneven transactions, so later batches are fetched while earlier ones
        # still commit; one batch fails once, transiently, and must hold its partition up.
        await insert(conn, records)
        await asyncio.sleep(random.uniform(0, 0.02))
        if any(r["seq"] == 30 for r in records) and not failed_once:
            failed_once.add(30)
            raise ConnectionResetError("the database went away")

    await produce(harness.bootstrap, harness.topic.name, sent)
    await harness.run_until(harness.consumer(apply), 360)

    assert failed_once
    seen: dict[str, list[int]] = defaultdict(list)
    for account, seq in await harness.rows():
        seen[account].append(seq)
    assert dict(seen) == {a: list(range(60)) for a in accounts}
    assert await read_topic(harness.bootstrap, harness.topic.dlq) == [[1, 2]]
    assert harness.counted() == {"consumed": 360, "consumer_retries": 1, "dead_lettered": 1}


async def test_stored_offsets_decide_where_it_resumes_not_kafkas(harness: Harness) -> None:
    """Records with no key of their own to deduplicate on: only the stored offsets keep a
    restarted consumer from applying them again."""
    await produce(harness.bootstrap, harness.topic.name, values(["cus_a", "cus_b", "cus_c"], 20))
    await harness.run_until(harness.consumer(insert), 60)
    # Kafka's committed offsets go back to the start, as after a crash before the
    # consumer told Kafka what its transaction had stored.
    rewind = AIOKafkaConsumer(bootstrap_servers=harness.bootstrap, group_id=harness.group, enable_auto_commit=False)
    await rewind.start()
    try:
        partitions = [TopicPartition(harness.topic.name, p) for p in range(harness.topic.partitions)]
        rewind.assign(partitions)
        await rewind.commit(dict.fromkeys(partitions, 0))
    finally:
        await rewind.stop()
    await produce(harness.bootstrap, harness.topic.name, values(["cus_d"], 5))

    await harness.run_until(harness.consumer(insert), 5)

    rows = await harness.rows()
    assert len(rows) == 65
    assert len(set(rows)) == 65  # nothing applied twice


async def test_a_record_that_fails_for_good_is_isolated_and_dead_lettered(harness: Harness) -> None:
    poison = {"a": "cus_p", "seq": 13}
    attempts: list[int] = []

    async def apply(conn: asyncpg.Connection, records: list[Record]) -> None:
        attempts.append(len(records))
        if poison in records:
            raise ValueError("this record breaks a rule")
        await insert(conn, records)

    await produce(harness.bootstrap, harness.topic.name, values(["cus_p"], 40))
    await harness.run_until(harness.consumer(apply, max_records=40), 39)

    assert sorted(seq for _, seq in await harness.rows()) == [s for s in range(40) if s != 13]
    assert await read_topic(harness.bootstrap, harness.topic.dlq) == [poison]
    assert harness.counted()["dead_lettered"] == 1
    assert 1 in attempts  # split down to the one record


async def test_a_transient_failure_is_retried_however_long_it_lasts_and_nothing_is_dead_lettered(
    harness: Harness,
) -> None:
    outage = {"left": 6}

    async def apply(conn: asyncpg.Connection, records: list[Record]) -> None:
        if outage["left"]:
            outage["left"] -= 1
            raise Transient("the mail server is away")
        await insert(conn, records)

    await produce(harness.bootstrap, harness.topic.name, values(["cus_t"], 10))
    await harness.run_until(harness.consumer(apply, max_records=10), 10)

    assert sorted(seq for _, seq in await harness.rows()) == list(range(10))
    assert harness.counted()["consumer_retries"] == 6
    assert harness.counted()["dead_lettered"] == 0
    assert await read_topic(harness.bootstrap, harness.topic.dlq) == []


async def test_a_dead_letter_is_replayed_once_after_the_fix(harness: Harness) -> None:
    fixed = {"yet": False}

    async def apply(conn: asyncpg.Connection, records: list[Record]) -> None:
        if any(r["seq"] == 3 for r in records) and not fixed["yet"]:
            raise ValueError("a bug this record finds")
        await insert(conn, records)

    await produce(harness.bootstrap, harness.topic.name, values(["cus_r"], 6))
    consumer = harness.consumer(apply, max_records=6)
    await harness.run_until(consumer, 5)
    assert sorted(seq for _, seq in await harness.rows()) == [0, 1, 2, 4, 5]

    fixed["yet"] = True
    set_aside = await dlq.dead_letters(harness.bootstrap, harness.topic.dlq, harness.group, since=None)
    assert [json.loads(r.value)["seq"] for r in set_aside] == [3]
    first = await dlq.replay(consumer.subscription, None, set_aside, harness.pool, harness.group)
    again = await dlq.replay(consumer.subscription, None, set_aside, harness.pool, harness.group)
    assert [d.outcome for d in first + again] == ["replayed", "already replayed"]
    assert sorted(seq for _, seq in await harness.rows()) == [0, 1, 2, 3, 4, 5]
