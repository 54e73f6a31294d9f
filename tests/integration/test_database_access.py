"""What each service may do in PostgreSQL, proved with the running stack's own
credentials: the ledger's role books entries but can never change or unprotect one;
every service role logs in over verified TLS only; the audit log is append-only for
everyone, its owner included."""

import ssl
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from tollgate_devstack.stack import Stack
from tollgate_ledger.config import Settings as LedgerSettings
from tollgate_shared import db


@pytest.fixture
def launcher(stack: dict[str, Any]) -> Stack:
    stack_: Stack = stack["launcher"]
    if not stack_.own_postgres:
        pytest.skip("PostgreSQL came from outside the stack: its roles and TLS are not the stack's")
    return stack_


def ledger_settings(launcher: Stack, **overrides: Any) -> LedgerSettings:
    """The ledger service's own settings, as the stack starts it."""
    env = launcher.env_for("ledger", launcher.cfg.database_url, launcher.cfg.kafka_bootstrap)
    fields = {k.removeprefix("LEDGER_").lower(): v for k, v in env.items() if k.startswith("LEDGER_")}
    return LedgerSettings(**(fields | overrides))


@pytest.fixture
async def as_ledger(launcher: Stack) -> AsyncIterator[asyncpg.Connection]:
    pool = await db.connect(ledger_settings(launcher), min_size=1, max_size=1)
    async with pool.acquire() as conn:
        yield conn
    await pool.close()


class TestLedgerRole:
    async def test_it_reads_the_journal_over_tls_as_itself(self, as_ledger: asyncpg.Connection) -> None:
        assert await as_ledger.fetchval("SELECT current_user") == "tollgate_ledger"
        assert await as_ledger.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
        assert await as_ledger.fetchval("SELECT count(*) FROM journal_transactions") >= 0

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE journal_transactions SET kind = kind",
            "DELETE FROM postings",
            "TRUNCATE journal_transactions CASCADE",
            "UPDATE period_balances SET closing = closing",
            "ALTER TABLE journal_transactions DISABLE TRIGGER ALL",
            "DROP TRIGGER postings_append_only ON postings",
            "CREATE OR REPLACE FUNCTION forbid_journal_change() RETURNS trigger LANGUAGE sql AS 'SELECT NULL'",
            "UPDATE audit_log SET caller = 'nobody'",
            "DELETE FROM audit_log",
            "CREATE TABLE ledger.mine (x int)",
            "SELECT count(*) FROM keys.keys",  # another service's schema
            "SELECT count(*) FROM checkout.outbox",
        ],
    )
    async def test_it_cannot_change_history_nor_reach_past_its_schema(
        self, as_ledger: asyncpg.Connection, statement: str
    ) -> None:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_ledger.execute(statement)


class TestTransport:
    async def test_a_service_role_without_tls_is_refused(self, launcher: Stack) -> None:
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=r"no pg_hba\.conf entry"):
            await db.connect(ledger_settings(launcher, database_sslmode="disable"), min_size=1, max_size=1)

    async def test_a_server_certificate_from_another_authority_is_refused(self, launcher: Stack, tmp_path: Any) -> None:
        from tollgate_devstack.tls import ensure_certificates

        stranger = ensure_certificates(tmp_path / "another-ca").ca
        with pytest.raises(ssl.SSLCertVerificationError):
            await db.connect(ledger_settings(launcher, database_sslrootcert=stranger), min_size=1, max_size=1)

    async def test_a_wrong_password_is_refused(self, launcher: Stack) -> None:
        url = launcher.service_database_url("ledger").replace(
            launcher.secrets["database_passwords"]["ledger"], "not-the-password"
        )
        with pytest.raises(asyncpg.InvalidPasswordError):
            await db.connect(ledger_settings(launcher, database_url=url), min_size=1, max_size=1)


async def test_not_even_the_owner_edits_the_audit_log(stack: dict[str, Any]) -> None:
    conn = await asyncpg.connect(stack["database_url"], server_settings={"search_path": "ledger"})
    try:
        for statement in ("UPDATE audit_log SET caller = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            await conn.execute(
                "INSERT INTO audit_log (caller, audience, method, path, status) "
                "VALUES ('t', 'operator', 'GET', '/', 200)"
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


def test_settings_secret_fields_stay_hidden(launcher: Stack) -> None:
    settings = ledger_settings(launcher)
    assert isinstance(settings.keys_token, SecretStr)
    assert launcher.secrets["database_passwords"]["ledger"] not in repr(settings)
