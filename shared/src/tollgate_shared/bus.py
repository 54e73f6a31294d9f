"""Kafka set-up: the broker, topic creation, and the reliable consumer wrapper."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from . import consumer_metrics
from .contracts import ALL_TOPICS, Topic
from .logging import get_logger

log = get_logger(__name__)
E = TypeVar("E")


def make_broker(bootstrap_servers: str, client_id: str) -> KafkaBroker:
    # Idempotent producer with acks=all: a retried send never duplicates on the broker.
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        logger=None,
    )


@asynccontextmanager
async def kafka_admin(bootstrap_servers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on leaving."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS) -> None:
    """Create every topic and its DLQ if missing. Safe to run from every replica."""
    async with kafka_admin(bootstrap_servers) as admin:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t.name, t.partitions, 1, topic_configs=t.config) for t in topics]
        wanted += [NewTopic(t.dlq, 1, 1) for t in topics]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another replica won the race
                await admin.create_topics(missing)


def subscribe(
    broker: KafkaBroker,
    topic: Topic,
    *,
    group_id: str,
    parse: Callable[[bytes], E],
    handle: Callable[[E], Awaitable[Any]],
    retries: int = 3,
    backoff_s: float = 0.2,
) -> None:
    """Subscribe `handle` to `topic`, committing offsets only after it succeeded.

    A message that cannot be parsed goes to the DLQ at once; one whose handler keeps
    failing goes there after `retries` attempts, so a poison message never blocks its
    partition. If even the DLQ publish fails, the offset is not committed and Kafka
    redelivers (NACK_ON_ERROR): nothing is silently dropped.
    """

    @broker.subscriber(
        topic.name,
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_message(msg: KafkaMessage) -> None:
        headers = msg.headers or {}
        with structlog.contextvars.bound_contextvars(
            event_id=headers.get("event_id"), event_type=headers.get("event_type"), topic=topic.name
        ):
            await _deliver(broker, topic, group_id, msg, parse, handle, retries, backoff_s)


async def _deliver(
    broker: KafkaBroker,
    topic: Topic,
    group_id: str,
    msg: Any,
    parse: Callable[[bytes], E],
    handle: Callable[[E], Awaitable[Any]],
    retries: int,
    backoff_s: float,
) -> None:
    labels = (topic.name, group_id)
    try:
        event = parse(msg.body)
    except (ValidationError, ValueError) as exc:
        await _dead_letter(broker, topic, group_id, msg, f"unparseable: {exc}")
        return
    for attempt in range(1, retries + 1):
        try:
            await handle(event)
            consumer_metrics.CONSUMED.labels(*labels).inc()
            return
        except Exception as exc:
            if attempt == retries:
                log.exception("handler failed; sending to DLQ", attempts=attempt)
                await _dead_letter(broker, topic, group_id, msg, repr(exc))
                return
            consumer_metrics.RETRIED.labels(*labels).inc()
            log.warning("handler failed; retrying", attempt=attempt, error=repr(exc))
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))


async def _dead_letter(broker: KafkaBroker, topic: Topic, group_id: str, msg: Any, error: str) -> None:
    raw = msg.raw_message
    await broker.publish(
        msg.body,
        topic.dlq,
        key=raw.key,
        headers={
            **{k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)},
            "dlq_error": error[:2000],
            "dlq_source": f"{raw.topic}/{raw.partition}/{raw.offset}",
        },
    )
    consumer_metrics.DEAD_LETTERED.labels(topic.name, group_id).inc()
    log.error("message dead-lettered", dlq=topic.dlq, error=error[:500])
