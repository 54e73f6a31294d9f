"""Kafka set-up: the admin client, and the topics of the catalog created as it says."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .contracts import ALL_TOPICS, Topic
from .contracts.topics import DLQ_RETENTION_MS


@asynccontextmanager
async def kafka_admin(bootstrap_servers: str, **options: Any) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on leaving."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def new_topics(topics: tuple[Topic, ...], replicas: int | None = None) -> list[NewTopic]:
    """Each topic and its dead-letter topic as the catalog defines them; `replicas`
    overrides the catalog's replication (a one-node dev broker has one replica)."""
    wanted = []
    for t in topics:
        factor = replicas or t.replication_factor
        in_sync = {"min.insync.replicas": str(min(t.min_insync_replicas, factor))}
        wanted.append(NewTopic(t.name, t.partitions, factor, topic_configs={**t.config, **in_sync}))
        wanted.append(NewTopic(t.dlq, 1, factor, topic_configs={**in_sync, "retention.ms": DLQ_RETENTION_MS}))
    return wanted


async def ensure_topics(
    bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS, *, replicas: int | None = None, **options: Any
) -> list[str]:
    """Create every missing topic and its DLQ; returns the names created. Safe to run
    from several places at once."""
    async with kafka_admin(bootstrap_servers, **options) as admin:
        existing = set(await admin.list_topics())
        missing = [t for t in new_topics(topics, replicas) if t.name not in existing]
        if missing:
            with suppress(TopicAlreadyExistsError):  # someone else won the race
                await admin.create_topics(missing)
        return [t.name for t in missing]
