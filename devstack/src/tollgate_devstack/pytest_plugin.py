"""Fixtures for integration and end-to-end tests.

Where PostgreSQL and Kafka come from, in order: TOLLGATE_TEST_DATABASE_URL and
TOLLGATE_TEST_KAFKA_BOOTSTRAP if set; else testcontainers if a Docker engine answers;
else the project's own launcher. The Stripe emulator, SMTP capture and the five
services always run as local processes against them. The test stack has its own
directory and ports (offset 300), so it can run beside a `make run` stack.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from typing import Any

import asyncpg
import pytest

from tollgate_shared import db

from .config import REPO_ROOT, StackConfig
from .infra import kafka_version
from .processes import free_port
from .stack import Stack

TEST_SERVICE_ENV = {
    # Windows of seconds so tests see a window close; production's default is an hour.
    "USAGE_SYNC_WINDOW_SECONDS": "4",
    "USAGE_SYNC_GRACE_SECONDS": "1",
    "USAGE_SYNC_TICK_SECONDS": "0.5",
    "CHECKOUT_WEBHOOK_TOLERANCE_S": "300",
    # Keys stop as soon as an invoice fails, so tests need not wait out a grace period.
    "KEYS_PAYMENT_FAILURE_GRACE_S": "0",
}


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _containers(resources: ExitStack) -> tuple[str, str]:
    """PostgreSQL and Kafka from images of the versions the launcher runs: Debian
    bookworm's PostgreSQL 15, and Apache's own Kafka image of the pom's version."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    pg = resources.enter_context(
        PostgresContainer(
            "postgres:15",
            username="tollgate",
            password="tollgate",  # noqa: S106 - a throwaway container
            dbname="tollgate",
            driver=None,
        )
    )
    port = free_port()  # mapped to the same number, so the advertised listener is reachable
    broker = (
        DockerContainer(f"apache/kafka:{kafka_version()}")
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    resources.enter_context(broker)
    wait_for_logs(broker, "Kafka Server started", timeout=120)
    return pg.get_connection_url(), f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, Any]]:
    env = {"TOLLGATE_PORT_OFFSET": "300", **os.environ}
    env.setdefault("TOLLGATE_STACK_DIR", str(StackConfig.from_env().state_dir.parent / ".stack-test"))
    launcher = Stack(StackConfig.from_env(env), service_env=TEST_SERVICE_ENV)
    with ExitStack() as resources:
        database_url = os.environ.get("TOLLGATE_TEST_DATABASE_URL")
        kafka = os.environ.get("TOLLGATE_TEST_KAFKA_BOOTSTRAP")
        if not (database_url and kafka) and _docker_answers():
            database_url, kafka = _containers(resources)
        keep = os.environ.get("TOLLGATE_TEST_KEEP_STACK") == "1"
        if not keep:
            resources.callback(launcher.down)
        launcher.up_infra(database_url, kafka)
        launcher.up_services(database_url, kafka)
        endpoints = launcher.endpoints()
        endpoints["database_url"] = database_url or endpoints["database_url"]
        endpoints["kafka"] = kafka or endpoints["kafka"]
        yield {**endpoints, "launcher": launcher}


@pytest.fixture(scope="session")
def database_url(stack: dict[str, Any]) -> str:
    return str(stack["database_url"])


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: dict[str, Any]) -> str:
    return str(stack["kafka"])


SCHEMAS = {
    name: REPO_ROOT / "services" / name / "src" / f"tollgate_{name.replace('-', '_')}" / "schema"
    for name in ("checkout", "ledger", "keys", "notifier", "usage-sync")
}
SCHEMAS["shared"] = REPO_ROOT / "shared" / "no-service"  # only the shared tables


@pytest.fixture
async def private_schema(database_url: str) -> AsyncIterator[Callable[[str], Awaitable[asyncpg.Pool]]]:
    """A pool on a fresh schema migrated like `service`'s own.

    The running services use their real schemas; a test's rows live apart from them,
    so no relay, reporter or consumer of a running service races the test's asserts.
    """
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make(service: str) -> asyncpg.Pool:
        schema = f"test_{service.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        await db.migrate(database_url, schema, SCHEMAS[service])
        pool = await db.create_pool(database_url, schema, min_size=1, max_size=30)
        made.append((schema, pool))
        return pool

    yield make
    for schema, pool in made:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
