"""What every benchmark needs: the local infrastructure, a fresh schema, a fresh topic."""

import asyncio
import os
import platform
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.stack import Stack
from tollgate_shared import db
from tollgate_shared.bus import ensure_topics
from tollgate_shared.consumer import BATCH_RECORDS, Subscription, TransactionalConsumer
from tollgate_shared.contracts import Topic, UsageIntake, UsageRecorded, parse_usage


def figure(name: str, value: float, unit: str) -> None:
    print(f"bench: {name} {value:.0f} {unit}" if value >= 100 else f"bench: {name} {value:.2f} {unit}", flush=True)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def bench_config() -> StackConfig:
    """The benchmarks' own stack: `.stack-bench/`, ports offset by 200 (the tests have
    theirs at 300). bench-keys publishes every validation's usage event, so on the stack
    `make run` shows, the next demo's usage-sync waited behind a bench's backlog of
    metered windows (and a running stack's services would consume a bench's events
    while it ran, on the same two cores)."""
    env = {"TOLLGATE_PORT_OFFSET": "200", **os.environ}
    env.setdefault("TOLLGATE_STACK_DIR", str(REPO_ROOT / ".stack-bench"))
    return StackConfig.from_env(env)


def infrastructure() -> Stack:
    """PostgreSQL and Kafka of the benchmarks' stack (started if needed, left running
    for the next run; `make bench-stop` stops them)."""
    stack = Stack(bench_config())
    # up_data runs its own event loop; the benchmarks call this from theirs.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(stack.up_data).result()
    return stack


async def fresh_schema(database_url: str, service_dir: Path) -> tuple[str, asyncpg.Pool]:
    schema = f"bench_{secrets.token_hex(4)}"
    await db.migrate(database_url, schema, service_dir)
    return schema, await db.create_pool(database_url, schema, min_size=2, max_size=10)


async def drop_schema(pool: asyncpg.Pool, schema: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()


async def fresh_topic(bootstrap: str, prefix: str, partitions: int = 6) -> Topic:
    topic = Topic(f"bench.{prefix}.{secrets.token_hex(4)}", (UsageRecorded,), "a benchmark's", partitions=partitions)
    await ensure_topics(bootstrap, (topic,), replicas=1)
    await asyncio.sleep(0.5)
    return topic


def usage_consumer(
    bootstrap: str,
    topic: Topic,
    group_id: str,
    pool: asyncpg.Pool,
    apply: Callable[[asyncpg.Connection, list[UsageIntake]], Awaitable[object]],
) -> TransactionalConsumer[None, UsageIntake]:
    """The services' own intake path over `topic`, applying each batch with `apply`."""

    async def apply_batch(_deps: None, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
        await apply(conn, usages)

    subscription = Subscription("bench", topic, parse_usage, apply_batch, "a benchmark's", max_records=BATCH_RECORDS)
    return TransactionalConsumer(subscription, None, bootstrap_servers=bootstrap, group_id=group_id, pool=pool)


async def until_applied(consumer: TransactionalConsumer[None, UsageIntake], count: int, poll_s: float = 0.05) -> float:
    """Wait until the consumer has applied `count` records; returns the moment it had."""
    while consumer.applied < count:
        await asyncio.sleep(poll_s)
    return time.perf_counter()
