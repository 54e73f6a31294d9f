"""Key emails through a real SMTP server (the stack's capture), sent once per event."""

import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY

from tollgate_devstack.processes import free_port
from tollgate_notifier.handlers import Deps, email_new_key
from tollgate_notifier.mailer import Mailer
from tollgate_notifier.templates import TEMPLATES
from tollgate_shared.contracts import KeyIssued
from tollgate_shared.errors import is_transient

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
FERNET = Fernet(Fernet.generate_key())


@pytest.fixture
def deps(stack: dict[str, Any]) -> Deps:
    port = stack["launcher"].cfg.ports["smtp"]
    return Deps(Mailer("127.0.0.1", port, "t@tollgate.local"), FERNET, TEMPLATES, "http://portal.example")


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


def issued(email: str, key: str) -> KeyIssued:
    return KeyIssued(
        key_id=uuid4(),
        account_id="cus_n",
        customer_email=email,
        customer_name="Ada",
        plan="starter",
        product_name="Starter",
        billing="prepaid",
        quota=1000,
        key_display="tg_test_…0000",
        key_ciphertext=FERNET.encrypt(key.encode()).decode(),
    )


async def inbox(stack: dict[str, Any], email: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['smtp_http']}/api/messages", params={"to": email})
    return r.json()["messages"]  # type: ignore[no-any-return]


def emails_counted() -> Counter[str]:
    """The notifier's key_issued emails on /metrics, by result."""
    counted = {
        r: REGISTRY.get_sample_value("tollgate_notifier_emails_total", {"template": "key_issued", "result": r})
        for r in ("sent", "already_sent")
    }
    return Counter({result: value or 0 for result, value in counted.items()})


class TestEmailNewKey:
    async def test_a_redelivered_event_sends_one_email(self, pool: asyncpg.Pool, deps: Deps, stack: Any) -> None:
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(email, "tg_test_PLAINTEXTKEY")
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
        self, pool: asyncpg.Pool, deps: Deps, stack: Any
    ) -> None:
        """SMTP has no transactions: this is the one window in which an email goes twice,
        and the copies say they are one."""
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(email, "tg_test_RETRYKEY")
        assert await deliver(pool, deps, event, then_crash=True) is False
        assert await deliver(pool, deps, event) is True
        messages = await inbox(stack, email)
        assert [m["message_id"] for m in messages] == [f"<{event.event_id}@tollgate>"] * 2

    async def test_a_mail_server_that_is_away_is_a_transient_failure_and_records_nothing(
        self, pool: asyncpg.Pool, deps: Deps
    ) -> None:
        away = Deps(Mailer("127.0.0.1", free_port(), "t@tollgate.local"), FERNET, TEMPLATES, "http://portal.example")
        event = issued(f"n+{secrets.token_hex(4)}@example.com", "tg_test_AWAYKEY")
        with pytest.raises(Exception) as raised:
            await deliver(pool, away, event)
        assert is_transient(raised.value)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM emails") == 0
