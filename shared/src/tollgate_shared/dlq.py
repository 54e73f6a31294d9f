"""Replaying a dead-letter topic: what a consumer set aside, applied again after a fix.

A record reaches `<topic>.dlq` only when nothing of it was applied (it did not parse, or
its effect failed for good and rolled back), with the group that failed it in its
`dlq_group` header. Replay reads the DLQ from its start, takes that group's records (since
a moment, if asked), and applies each through the subscription's own step in a
transaction that also stores the DLQ offset under `<group>.dlq-replay`: each record is
replayed once, however often the command runs. A record that fails again stops the
replay there; fix it and run again.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from .consumer import Subscription


@dataclass(frozen=True)
class Replayed:
    offset: int
    outcome: str  # replayed | already replayed | failed: <error>


async def dead_letters(
    bootstrap: str, topic: str, group: str, since: datetime | None, **options: Any
) -> list[ConsumerRecord]:
    """The DLQ's records that `group` set aside, oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[ConsumerRecord] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += records
    finally:
        await consumer.stop()
    earliest = since.timestamp() * 1000 if since else 0
    return [r for r in found if _header(r, "dlq_group") == group and r.timestamp >= earliest]


async def replay(
    subscription: Subscription[Any, Any],
    deps: Any,
    records: list[ConsumerRecord],
    pool: asyncpg.Pool,
    group: str,
) -> list[Replayed]:
    """Apply each record once, in order, through the subscription's replay step."""
    step = subscription.replay or subscription.apply
    consumer, done = f"{group}.dlq-replay", []
    for record in records:
        async with pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(
                "SELECT next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2 AND partition = $3 "
                "FOR UPDATE",
                consumer,
                record.topic,
                record.partition,
            )
            if stored is not None and record.offset < stored:
                done.append(Replayed(record.offset, "already replayed"))
                continue
            try:
                async with conn.transaction():  # a savepoint: a failure leaves the offset as it was
                    await step(deps, conn, [subscription.parse(record.value)])
            except Exception as exc:
                done.append(Replayed(record.offset, f"failed: {exc!r}"[:300]))
                return done
            await conn.execute(
                "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = GREATEST("
                "  consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
                consumer,
                record.topic,
                record.partition,
                record.offset + 1,
            )
        done.append(Replayed(record.offset, "replayed"))
    return done


def _header(record: ConsumerRecord, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
