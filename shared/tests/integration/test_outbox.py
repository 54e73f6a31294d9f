"""The outbox against real PostgreSQL and Kafka."""

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from tollgate_shared import outbox
from tollgate_shared.bus import ensure_topics
from tollgate_shared.contracts import KeyRevoked, Topic, event_id_for
from tollgate_shared.contracts.keys import KEYS_MESSAGES
from tollgate_shared.kafka_reader import read_topic

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = outbox.outbox_producer(kafka_bootstrap, "outbox-test")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> Topic:
    t = Topic(f"test.outbox.{secrets.token_hex(4)}", KEYS_MESSAGES, "a test's", partitions=1)
    await ensure_topics(kafka_bootstrap, (t,), replicas=1)
    return t


def revoked(account: str, n: int) -> KeyRevoked:
    return KeyRevoked(
        event_id=event_id_for("test", account, str(n)), key_id=event_id_for(account), account_id=account, reason=f"r{n}"
    )


async def add(pool: asyncpg.Pool, topic: Topic, event: KeyRevoked) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, topic, event.account_id, event)


class TestOutbox:
    async def test_publishes_in_order_keyed_by_account(
        self, private_schema: MakePool, producer: AIOKafkaProducer, topic: Topic, kafka_bootstrap: str
    ) -> None:
        pool = await private_schema("shared")
        for n in range(5):
            await add(pool, topic, revoked("cus_a", n))
        assert await outbox.OutboxRelay(pool, producer).relay_once() == 5
        got: list[dict[str, Any]] = await read_topic(kafka_bootstrap, topic.name)
        assert [m["reason"] for m in got] == ["r0", "r1", "r2", "r3", "r4"]

    async def test_metrics_count_what_kafka_acknowledged_and_show_how_long_events_waited(
        self, private_schema: MakePool, producer: AIOKafkaProducer, topic: Topic
    ) -> None:
        pool = await private_schema("shared")
        relay = outbox.OutboxRelay(pool, producer)
        for n in range(3):
            await add(pool, topic, revoked("cus_m", n))
        async with pool.acquire() as conn:
            # As if written a minute ago and not yet relayed (Kafka was down, say).
            await conn.execute("UPDATE outbox SET created_at = now() - interval '60 seconds'")
        assert await relay.relay_once() == 3
        assert REGISTRY.get_sample_value("tollgate_outbox_published_total", {"topic": topic.name}) == 3
        waited = REGISTRY.get_sample_value("tollgate_outbox_oldest_waiting_seconds")
        assert waited is not None and 60 <= waited < 120
        assert await relay.relay_once() == 0
        assert REGISTRY.get_sample_value("tollgate_outbox_oldest_waiting_seconds") == 0

    async def test_the_same_event_added_after_publishing_is_not_published_again(
        self, private_schema: MakePool, producer: AIOKafkaProducer, topic: Topic, kafka_bootstrap: str
    ) -> None:
        pool = await private_schema("shared")
        relay = outbox.OutboxRelay(pool, producer)
        await add(pool, topic, revoked("cus_b", 1))
        assert await relay.relay_once() == 1
        await add(pool, topic, revoked("cus_b", 1))
        assert await relay.relay_once() == 0
        assert len(await read_topic(kafka_bootstrap, topic.name)) == 1

    async def test_a_forgotten_topics_rows_go_once_published_and_the_others_stay(
        self, private_schema: MakePool, producer: AIOKafkaProducer, topic: Topic, kafka_bootstrap: str
    ) -> None:
        calls = Topic(f"test.calls.{secrets.token_hex(4)}", KEYS_MESSAGES, "one per call", keep_published=False)
        await ensure_topics(kafka_bootstrap, (calls,), replicas=1)
        pool = await private_schema("shared")
        for n in range(3):
            await add(pool, topic, revoked("cus_f", n))
            await add(pool, calls, revoked("cus_g", n))
        assert await outbox.OutboxRelay(pool, producer, forget=frozenset({calls.name})).relay_once() == 6
        async with pool.acquire() as conn:
            kept = await conn.fetch("SELECT topic, published_at IS NOT NULL AS published FROM outbox")
        assert sorted((r["topic"], r["published"]) for r in kept) == [(topic.name, True)] * 3
        assert len(await read_topic(kafka_bootstrap, calls.name)) == 3

    async def test_a_rolled_back_change_publishes_nothing(
        self, private_schema: MakePool, producer: AIOKafkaProducer, topic: Topic, kafka_bootstrap: str
    ) -> None:
        pool = await private_schema("shared")
        with pytest.raises(RuntimeError):
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, topic, "cus_c", revoked("cus_c", 1))
                raise RuntimeError("the business change failed")
        assert await outbox.OutboxRelay(pool, producer).relay_once() == 0
        assert await read_topic(kafka_bootstrap, topic.name) == []

    async def test_batches_land_where_a_keyed_send_would_in_order_with_headers(
        self, private_schema: MakePool, kafka_bootstrap: str
    ) -> None:
        # The relay builds its own record batches; a small batch size makes it open several
        # per partition. Each account must still land on the partition Kafka's default
        # partitioner picks for its key, in the order the rows were written.
        topic = Topic(f"test.outbox.{secrets.token_hex(4)}", KEYS_MESSAGES, "a test's", partitions=6)
        await ensure_topics(kafka_bootstrap, (topic,), replicas=1)
        pool = await private_schema("shared")
        accounts = [f"cus_{n}" for n in range(20)]
        async with pool.acquire() as conn, conn.transaction():
            for n in range(15):
                for account in accounts:
                    await outbox.add(conn, topic, account, revoked(account, n))
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, max_batch_size=1024)
        await producer.start()
        try:
            assert await outbox.OutboxRelay(pool, producer).relay_once() == 300
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic.name, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            records: list[ConsumerRecord[bytes, bytes]] = []
            while len(records) < 300:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, f"only {len(records)} of 300 records arrived"
                records += [r for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        partitions = list(range(6))
        for account in accounts:
            mine = [r for r in records if r.key == account.encode()]
            assert {r.partition for r in mine} == {DefaultPartitioner()(account.encode(), partitions, partitions)}
            assert [json.loads(r.value)["reason"] for r in sorted(mine, key=lambda r: r.offset)] == [
                f"r{n}" for n in range(15)
            ]
            headers = dict(mine[0].headers)
            assert headers["event_type"] == b"KeyRevoked"
            assert headers["event_id"] == str(json.loads(mine[0].value)["event_id"]).encode()
