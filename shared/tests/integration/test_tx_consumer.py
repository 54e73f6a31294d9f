"""The transactional consumer against real Kafka and PostgreSQL, with many batches in flight."""

import asyncio
import json
import random
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from tollgate_shared.bus import ensure_topics
from tollgate_shared.contracts import Topic
from tollgate_shared.kafka_reader import read_topic
from tollgate_shared.tx_consumer import TransactionalConsumer

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
Record = dict[str, Any]


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


async def test_each_partition_applies_in_order_exactly_once_with_batches_in_flight(
    private_schema: MakePool, kafka_bootstrap: str
) -> None:
    topic = Topic(f"test.txc.{secrets.token_hex(4)}", partitions=3)
    await ensure_topics(kafka_bootstrap, (topic,))
    pool = await private_schema("shared")
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE applied (account text, seq int, PRIMARY KEY (account, seq))")

    accounts = [f"cus_{n}" for n in range(6)]
    values = [(a, json.dumps({"account": a, "seq": seq}).encode()) for seq in range(60) for a in accounts]
    values.insert(100, (accounts[0], b"[1, 2]"))  # does not parse: dead-lettered, skipped
    seen: dict[str, list[int]] = defaultdict(list)
    failed_once: set[int] = set()

    async def apply(conn: asyncpg.Connection, records: list[Record]) -> None:
        # Slow, uneven transactions, so later batches are fetched while earlier ones
        # still commit; one batch fails once and must hold its partition up meanwhile.
        await conn.executemany(
            "INSERT INTO applied (account, seq) VALUES ($1, $2)", [(r["account"], r["seq"]) for r in records]
        )
        await asyncio.sleep(random.uniform(0, 0.02))
        if any(r["seq"] == 30 for r in records) and not failed_once:
            failed_once.add(30)
            raise RuntimeError("the database went away")
        for r in records:
            seen[r["account"]].append(r["seq"])

    consumer = TransactionalConsumer[Record](
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        group_id=f"g-{topic.name}",
        pool=pool,
        parse=parse,
        apply=apply,
        max_records=7,
        depth=4,
    )
    await produce(kafka_bootstrap, topic.name, values)
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while consumer.applied < 360:
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()

    assert failed_once
    assert dict(seen) == {a: list(range(60)) for a in accounts}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM applied") == 360
    dead = await read_topic(kafka_bootstrap, topic.dlq)
    assert dead == [[1, 2]]
    labels = {"topic": topic.name, "group": f"g-{topic.name}"}
    counted = {
        name: REGISTRY.get_sample_value(f"tollgate_{name}_total", labels)
        for name in ("consumed", "consumer_retries", "dead_lettered")
    }
    assert counted == {"consumed": 360, "consumer_retries": 1, "dead_lettered": 1}
