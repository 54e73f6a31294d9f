"""Two keys-service processes, 64 concurrent clients: never one unit beyond the limits."""

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tollgate_devstack.processes import free_port, wait_until
from tollgate_keys import keyformat

CLIENTS = 64


@pytest.fixture(scope="module")
def two_processes(stack: dict[str, Any]) -> list[str]:
    """The stack's keys service plus a second process on the same database."""
    launcher = stack["launcher"]
    port = free_port()
    env = launcher.env_for("keys", stack["database_url"], stack["kafka"]) | {"KEYS_HTTP_PORT": str(port)}
    launcher.procs.start("keys-second", [sys.executable, "-m", "tollgate_keys"], env)
    url = f"http://127.0.0.1:{port}"

    wait_until(
        "second keys process",
        lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
        60,
        lambda: launcher.procs.log_tail("keys-second"),
    )
    yield [stack["keys"], url]
    launcher.procs.stop("keys-second")


@pytest.fixture
async def keys_db(stack: dict[str, Any]) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack["database_url"], server_settings={"search_path": "keys"})
    yield conn
    await conn.close()


async def a_key(
    stack: dict[str, Any], conn: asyncpg.Connection, quota: int | None, requests_per_minute: int | None = None
) -> str:
    plaintext = keyformat.generate("test")
    await conn.execute(
        "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, quota_limit, source_ref, "
        "  requests_per_minute) VALUES ($1, $2, $3, 'tg_test_…', 'p', $4, $5, $6, $7)",
        uuid4(),
        f"cus_{secrets.token_hex(4)}",
        keyformat.hash_key(stack["launcher"].secrets["hash_secret"].encode(), plaintext),
        "prepaid" if quota else "metered",
        quota,
        f"cs_{secrets.token_hex(6)}",
        requests_per_minute,
    )
    return plaintext


async def hammer(urls: list[str], key: str, calls: int, units: int = 1) -> list[dict[str, Any]]:
    """`calls` consuming validations from CLIENTS concurrent clients, alternating processes."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    answers: list[dict[str, Any]] = []

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not queue.empty():
                i = queue.get_nowait()
                r = await http.post(
                    f"{urls[i % len(urls)]}/v1/keys/validate", json={"apiKey": key, "units": units, "consume": True}
                )
                assert r.status_code == 200, r.text
                answers.append(r.json())

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answers


class TestTwoProcesses:
    async def test_exactly_the_quota_is_accepted(
        self, stack: dict[str, Any], two_processes: list[str], keys_db: asyncpg.Connection
    ) -> None:
        key = await a_key(stack, keys_db, quota=150)
        answers = await hammer(two_processes, key, calls=400)
        assert sum(a["isValid"] for a in answers) == 150
        assert {a["reason"] for a in answers if not a["isValid"]} == {"quota_exceeded"}
        used = await keys_db.fetchval(
            "SELECT quota_used FROM keys WHERE key_hash = $1",
            keyformat.hash_key(stack["launcher"].secrets["hash_secret"].encode(), key),
        )
        assert used == 150

    async def test_exactly_the_per_minute_rate_is_accepted(
        self, stack: dict[str, Any], two_processes: list[str], keys_db: asyncpg.Connection
    ) -> None:
        key = await a_key(stack, keys_db, quota=None, requests_per_minute=90)
        if datetime.now(UTC).second >= 45:  # fixed windows: stay inside one minute
            await asyncio.sleep(61 - datetime.now(UTC).second)
        answers = await hammer(two_processes, key, calls=300)
        assert sum(a["isValid"] for a in answers) == 90
        assert {a["reason"] for a in answers if not a["isValid"]} == {"rate_limited"}
