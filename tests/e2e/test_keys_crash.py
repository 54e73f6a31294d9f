"""SIGKILL the keys service under load: no recorded usage is lost, none is counted twice."""

import asyncio
import secrets
import sys
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tollgate_devstack.demo import eventually
from tollgate_devstack.processes import free_port, wait_until
from tollgate_keys import keyformat
from tollgate_shared.kafka_reader import read_topic


class KeysProcess:
    """A keys service of its own (own schema, so its outbox relay is the only one for it)."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.launcher = stack["launcher"]
        self.schema = f"crash_keys_{secrets.token_hex(4)}"
        self.name = f"keys-{self.schema}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = self.launcher.env_for("keys", stack["database_url"], stack["kafka"]) | {
            "KEYS_HTTP_PORT": str(self.port),
            "KEYS_ADMIN_PORT": str(free_port()),
            "KEYS_SCHEMA_NAME": self.schema,
            "KEYS_LOG_LEVEL": "WARNING",
            "KEYS_CONSUMERS_ENABLED": "false",  # validations only: the stack's keys consumes payments
        }

    def start(self, pause_at: str | None = None) -> None:
        self.launcher.procs.start(
            self.name,
            [sys.executable, "-m", "tollgate_keys"],
            self.env | ({"TOLLGATE_PAUSE_AT": pause_at} if pause_at else {}),
        )
        wait_until(
            self.name,
            lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200,
            60,
            lambda: self.launcher.procs.log_tail(self.name),
        )

    def kill(self) -> None:
        self.launcher.procs.kill(self.name)


async def load(url: str, key: str, stop: asyncio.Event, clients: int = 16) -> int:
    """Consume one unit at a time until stopped; returns how many were acknowledged."""
    acknowledged = 0

    async def client() -> None:
        nonlocal acknowledged
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                try:
                    r = await http.post(f"{url}/v1/keys/validate", json={"apiKey": key, "units": 1, "consume": True})
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)  # the process is gone; keep trying until told to stop
                    continue
                if r.status_code == 200 and r.json()["isValid"]:
                    acknowledged += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return acknowledged


@pytest.mark.parametrize("kill_at", ["a random moment under load", "outbox.after_publish"])
async def test_sigkill_loses_no_recorded_usage_and_counts_none_twice(stack: dict[str, Any], kill_at: str) -> None:
    process = KeysProcess(stack)
    pause = None if kill_at.startswith("a random") else kill_at
    process.start(pause_at=pause)
    conn = await asyncpg.connect(stack["database_url"], server_settings={"search_path": process.schema})
    try:
        key = keyformat.generate("test")
        key_id = uuid4()
        await conn.execute(
            "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, source_ref) "
            "VALUES ($1, $2, $3, 'tg_test_…', 'metered', 'metered', $4)",
            key_id,
            f"cus_{process.schema}",
            keyformat.hash_key(process.launcher.secrets["hash_secret"].encode(), key),
            f"cs_{process.schema}",
        )
        stop = asyncio.Event()
        running = asyncio.create_task(load(process.url, key, stop))
        if pause:
            log = process.launcher.procs.log_dir / f"{process.name}.log"

            async def paused() -> bool | None:
                return pause in log.read_text(errors="replace") or None

            await eventually("the relay to reach its pause point", paused, 15, every=0.05)
        else:
            await asyncio.sleep(1.5)  # under load for a while, then killed wherever it is
        process.kill()  # SIGKILL
        await asyncio.sleep(0.5)
        process.start()  # without the pause: the relay re-publishes what it had not marked
        await asyncio.sleep(1.0)
        stop.set()
        acknowledged = await running
        await eventually(
            "the relay to drain",
            lambda: conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
            until=lambda waiting: waiting == 0,
            every=0.1,
        )
        recorded = await conn.fetchval("SELECT quota_used FROM keys WHERE id = $1", key_id)
    finally:
        process.kill()
        await conn.close()

    published = [m for m in await read_topic(stack["kafka"], "usage.recorded") if m.get("key_id") == str(key_id)]
    totals = [m["key_units_total"] for m in published]
    # Every answer that said yes was recorded (more may be: committed, then the answer died with the process).
    assert 0 < acknowledged <= recorded
    # Every recorded unit was published: the key's running totals are exactly 1..recorded.
    assert sorted(set(totals)) == list(range(1, recorded + 1))
    # A re-published message is an exact copy (same event id and total), so consumers,
    # which deduplicate on it, count it once: nothing is counted twice.
    by_total: dict[int, set[str]] = {}
    for m in published:
        by_total.setdefault(m["key_units_total"], set()).add(m["event_id"])
    assert all(len(ids) == 1 for ids in by_total.values())
    if pause:
        assert len(totals) > len(set(totals)), "killed after publishing, before marking: expected re-publishes"
