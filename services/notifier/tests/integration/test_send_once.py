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

from tollgate_notifier.handlers import NotifierDeps, email_new_key
from tollgate_notifier.mailer import Mailer
from tollgate_notifier.templates import TEMPLATES
from tollgate_shared.contracts import KeyIssued

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
FERNET = Fernet(Fernet.generate_key())


@pytest.fixture
async def deps(private_schema: MakePool, stack: dict[str, Any]) -> NotifierDeps:
    port = stack["launcher"].cfg.ports["smtp"]
    return NotifierDeps(
        await private_schema("notifier"),
        Mailer("127.0.0.1", port, "t@tollgate.local"),
        FERNET,
        TEMPLATES,
        "http://portal.example",
    )


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
    async def test_a_redelivered_event_sends_one_email(self, deps: NotifierDeps, stack: dict[str, Any]) -> None:
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(email, "tg_test_PLAINTEXTKEY")
        before = emails_counted()
        assert await email_new_key(event, deps) is True
        assert await email_new_key(event, deps) is False
        assert emails_counted() - before == Counter({"sent": 1, "already_sent": 1})
        messages = await inbox(stack, email)
        assert len(messages) == 1
        assert "tg_test_PLAINTEXTKEY" in messages[0]["body"]
        assert "1,000" in messages[0]["body"]
        assert messages[0]["message_id"] == f"<{event.event_id}@tollgate>"

    async def test_an_interrupted_send_is_retried(self, deps: NotifierDeps, stack: dict[str, Any]) -> None:
        """A row left in 'sending' (crash before SMTP finished) sends on redelivery."""
        email = f"n+{secrets.token_hex(4)}@example.com"
        event = issued(email, "tg_test_RETRYKEY")
        async with deps.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO emails (event_id, template, recipient, message_id, status) "
                "VALUES ($1, 'key_issued', $2, 'x', 'sending')",
                event.event_id,
                email,
            )
        assert await email_new_key(event, deps) is True
        assert len(await inbox(stack, email)) == 1
