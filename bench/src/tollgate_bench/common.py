"""What every benchmark needs: the local infrastructure, a fresh schema, a fresh topic."""

import asyncio
import json
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from tollgate_devstack import infra
from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.stack import Stack
from tollgate_shared import db
from tollgate_shared.bus import ensure_topics
from tollgate_shared.consumer import BATCH_RECORDS, Subscription, TransactionalConsumer
from tollgate_shared.contracts import Topic, UsageIntake, UsageRecorded, parse_usage

HERE = Path(__file__).parent


def wrk(
    script: str, port: int, seconds: int, connections: int = 64, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Closed loop, as fast as answers come back: wrk (C), so the load generator takes
    little of the two cores the service, PostgreSQL and Kafka share. `script` is one of
    this package's Lua scripts, `env` what it reads; its figures, as report.lua prints them."""
    out = subprocess.run(
        [
            infra.debian_command("wrk", "wrk"),
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{seconds}s",
            "--script",
            str(HERE / script),
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "WRK_REPORT": str(HERE / "report.lua"), **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pgbench(port: int, schema: str, script: Path, options: list[str]) -> subprocess.CompletedProcess[str]:
    """pgbench running `script` in `schema` as the stack's superuser, with `options`."""
    return subprocess.run(
        [
            str(infra.postgres_bin() / "pgbench"),
            "-n",
            *options,
            "-f",
            str(script),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "tollgate",
            "tollgate",
        ],
        capture_output=True,
        text=True,
        env={"PGOPTIONS": f"-c search_path={schema}"},
    )


def latency_ms(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and p99.9 of `latencies` (seconds), in milliseconds, by the definition
    loadgen.c uses: the value at index n*p of the sorted list."""
    ordered = sorted(latencies)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999)}


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
