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

from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.processes import free_port, wait_until
from tollgate_keys import keyformat

CLIENTS = 64


@pytest.fixture(scope="module")
def two_processes(stack: dict[str, Any]) -> list[str]:
    """The stack's keys service plus a second process on the same database."""
    launcher = stack["launcher"]
    port = free_port()
    env = launcher.env_for("keys", stack["database_url"], stack["kafka"]) | {
        "KEYS_HTTP_PORT": str(port),
        "KEYS_ADMIN_PORT": str(free_port()),
    }
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
        # Metered: prepaid usage is burned by the ledger, whose balance for this made-up
        # account (no purchase, so zero credits) would then gate the key too.
        "metered",
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


class TestPrepaidBalance:
    """The ledger's balance gates spending: keys learns it from ledger.balances."""

    async def credits(self, http: httpx.AsyncClient, stack: dict[str, Any], account: str) -> dict[str, Any]:
        r = await http.get(
            f"{stack['keys_admin']}/v1/admin/accounts/{account}/credits",
            headers={"Authorization": f"Bearer {stack['operator_token']}"},
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def test_never_one_unit_beyond_the_balance_and_keys_agrees_with_the_ledger(
        self, stack: dict[str, Any], two_processes: list[str]
    ) -> None:
        async with Demo(stack, say=lambda _: None) as demo, httpx.AsyncClient(timeout=15) as http:
            email = f"credits+{secrets.token_hex(4)}@example.com"
            session = await demo.buy("enterprise", email)
            await demo.pay(session["id"])
            account = session["customer"]
            key, _ = await demo.key_from_email(email)

            async def learned(amount: int) -> bool | None:
                return (await self.credits(http, stack, account))["ledger_available"] == amount or None

            await eventually("keys to learn the purchase", lambda: learned(100_000))
            # Finance takes most credits back: the key's quota (100,000) would still allow them.
            r = await http.post(
                f"{stack['ledger_admin']}/v1/accounts/{account}/adjustments",
                headers={"Authorization": f"Bearer {stack['operator_token']}"},
                json={"adjustment_id": f"take-{account}", "units": -99_900, "reason": "test"},
            )
            assert r.status_code == 201, r.text
            await eventually("keys to learn the adjustment", lambda: learned(100))

            answers = await hammer(two_processes, key, calls=300)
            assert sum(a["isValid"] for a in answers) == 100
            assert {a["reason"] for a in answers if not a["isValid"]} == {"insufficient_balance"}

            async def drained() -> dict[str, Any] | None:
                view = await self.credits(http, stack, account)
                return view if view["in_flight"] == 0 else None

            view = await eventually("the ledger to book every unit", drained)
            ledger = await demo.balance(account)
            assert ledger is not None
            assert view["available"] == ledger["available"] == 0  # to the unit
            assert ledger["current"] == 0
