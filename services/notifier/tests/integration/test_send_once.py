"""Key emails through a real SMTP server (the stack's capture), sent once per event."""

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet
from prometheus_client import REGISTRY

from tollgate_devstack.processes import free_port
from tollgate_notifier.handlers import Deps, email_new_key, forget_emailed_keys
from tollgate_notifier.mailer import Mailer
from tollgate_notifier.templates import TEMPLATES
from tollgate_shared.contracts import KeyIssued
from tollgate_shared.errors import is_transient

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
OLD, NEW = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
FERNET = MultiFernet([NEW, OLD])  # mid-rotation: seals with the new key, opens with either


class HeldKeys:
    """The keys service's side of a delivery (its internal API, as keys_client.py calls
    it): sealed plaintexts until they are forgotten. The e2e tests use the real one."""

    def __init__(self) -> None:
        self.sealed: dict[UUID, str] = {}

    async def sealed_key(self, key_id: UUID) -> str | None:
        return self.sealed.get(key_id)

    async def forget(self, key_id: UUID) -> None:
        self.sealed.pop(key_id, None)


@pytest.fixture
def held() -> HeldKeys:
    return HeldKeys()


@pytest.fixture
def deps(stack: dict[str, Any], held: HeldKeys) -> Deps:
    port = stack["launcher"].cfg.ports["smtp"]
    return Deps(Mailer("127.0.0.1", port, "t@tollgate.local"), held, FERNET, TEMPLATES, "http://portal.example")


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("notifier")


async def deliver(pool: asyncpg.Pool, deps: Deps, event: KeyIssued, *, then_crash: bool = False) -> bool:
    """Handle the event in a transaction, as its consumer does; optionally die before the commit."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                sent = await email_new_key(event, conn, deps)
                if then_crash:
                    raise ConnectionResetError("the process died before the commit")
        except ConnectionResetError:
            return False
    return sent


def issued(held: HeldKeys, email: str, key: str, sealed_by: Fernet = NEW) -> KeyIssued:
    key_id = uuid4()
    held.sealed[key_id] = sealed_by.encrypt(key.encode()).decode()
    return KeyIssued(
        key_id=key_id,
        account_id="cus_n",
        customer_email=email,
        customer_name="Ada",
        plan="starter",
        product_name="Starter",
        billing="prepaid",
        quota=1000,
        key_display="tg_test_…0000",
    )


async def inbox(stack: dict[str, Any], email: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['smtp_http']}/api/messages", params={"to": email})
    return r.json()["messages"]  # type: ignore[no-any-return]


def emails_counted() -> Counter[str]:
    """The notifier's key_issued emails on /metrics, by result."""
    counted = {
        r: REGISTRY.get_sample_value("tollgate_notifier_emails_total", {"template": "key_issued", "result": r})
        for r in ("sent", "already_sent", "key_gone")
    }
    return Counter({result: value or 0 for result, value in counted.items()})


class TestEmailNewKey:
    async def test_a_redelivered_event_sends_one_email(
        self, pool: asyncpg.Pool, deps: Deps, held: HeldKeys, stack: Any
    ) -> None:
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(held, email, "tg_test_PLAINTEXTKEY")
        before = emails_counted()
        assert await deliver(pool, deps, event) is True
        assert await deliver(pool, deps, event) is False
        assert emails_counted() - before == Counter({"sent": 1, "already_sent": 1})
        messages = await inbox(stack, email)
        assert len(messages) == 1
        assert "tg_test_PLAINTEXTKEY" in messages[0]["body"]
        assert "1,000" in messages[0]["body"]
        assert messages[0]["message_id"] == f"<{event.event_id}@tollgate>"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM emails WHERE event_id = $1", event.event_id) == 1

    async def test_a_crash_after_smtp_resends_under_the_same_message_id(
        self, pool: asyncpg.Pool, deps: Deps, held: HeldKeys, stack: Any
    ) -> None:
        """SMTP has no transactions: this is the one window in which an email goes twice,
        and the copies say they are one."""
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(held, email, "tg_test_RETRYKEY")
        assert await deliver(pool, deps, event, then_crash=True) is False
        assert await deliver(pool, deps, event) is True
        messages = await inbox(stack, email)
        assert [m["message_id"] for m in messages] == [f"<{event.event_id}@tollgate>"] * 2

    async def test_a_mail_server_that_is_away_is_a_transient_failure_and_records_nothing(
        self, pool: asyncpg.Pool, held: HeldKeys
    ) -> None:
        away = Deps(
            Mailer("127.0.0.1", free_port(), "t@tollgate.local"), held, FERNET, TEMPLATES, "http://portal.example"
        )
        event = issued(held, f"n+{secrets.token_hex(4)}@example.com", "tg_test_AWAYKEY")
        with pytest.raises(Exception) as raised:
            await deliver(pool, away, event)
        assert is_transient(raised.value)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM emails") == 0


class TestSealedDelivery:
    async def test_once_emailed_the_keys_service_is_told_to_forget_the_key(
        self, pool: asyncpg.Pool, deps: Deps, held: HeldKeys
    ) -> None:
        event = issued(held, f"n+{secrets.token_hex(4)}@example.com", "tg_test_FORGETME")
        assert await deliver(pool, deps, event) is True
        assert event.key_id in held.sealed  # not before the email's row is committed
        forgetting = asyncio.create_task(forget_emailed_keys(pool, held, every_s=0.05))
        try:
            for _ in range(100):
                if event.key_id not in held.sealed:
                    break
                await asyncio.sleep(0.05)
        finally:
            forgetting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forgetting
        assert event.key_id not in held.sealed
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM keys_to_forget") == 0

    async def test_a_key_sealed_before_a_rotation_still_opens(
        self, pool: asyncpg.Pool, deps: Deps, held: HeldKeys, stack: Any
    ) -> None:
        email = f"n+{secrets.token_hex(4)}@example.com"
        assert await deliver(pool, deps, issued(held, email, "tg_test_OLDSEAL", sealed_by=OLD)) is True
        assert "tg_test_OLDSEAL" in (await inbox(stack, email))[0]["body"]

    async def test_a_key_no_longer_held_is_not_emailed_and_is_counted(
        self, pool: asyncpg.Pool, deps: Deps, held: HeldKeys, stack: Any
    ) -> None:
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(held, email, "tg_test_GONE")
        held.sealed.clear()
        before = emails_counted()
        assert await deliver(pool, deps, event) is False
        assert emails_counted() - before == Counter({"key_gone": 1})
        assert await inbox(stack, email) == []
