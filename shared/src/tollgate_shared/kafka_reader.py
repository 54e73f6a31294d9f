"""Read a whole Kafka topic: for reconciliation, and for tests that check what was published."""

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer


async def read_topic(bootstrap: str, topic: str, **options: Any) -> list[dict[str, Any]]:
    """Every message on `topic` from the beginning up to its current end."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options,
    )
    await consumer.start()
    try:
        partitions = consumer.assignment()
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        found: list[dict[str, Any]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            found += [json.loads(r.value) for records in batch.values() for r in records]
        return found
    finally:
        await consumer.stop()
