"""Issue and validate against a real PostgreSQL, including concurrent consumers."""

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from uuid import uuid4

import asyncpg
import pytest
from cryptography.fernet import Fernet

from tollgate_keys import keyformat, repo
from tollgate_keys.handlers import KeySecrets, Validate, issue_key, revoke_key, validate_key
from tollgate_shared.contracts import Money, PaymentSucceeded

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
SECRETS = KeySecrets("test", b"integration-hash-secret", Fernet(Fernet.generate_key()))


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("keys")


async def a_key(pool: asyncpg.Pool, quota: int | None = 100) -> str:
    plaintext = keyformat.generate("test")
    async with pool.acquire() as conn:
        await repo.insert_key(
            conn,
            key_id=uuid4(),
            account_id=f"cus_{secrets.token_hex(4)}",
            key_hash=keyformat.hash_key(SECRETS.hash_secret, plaintext),
            key_display=keyformat.display(plaintext),
            plan="p",
            billing="prepaid" if quota else "metered",
            quota_limit=quota,
            features=[],
            source_ref=f"cs_{secrets.token_hex(6)}",
        )
    return plaintext


class TestIssue:
    async def test_one_key_per_checkout_session_and_only_its_hash_is_stored(self, pool: asyncpg.Pool) -> None:
        fact = PaymentSucceeded(
            account_id="cus_issue",
            customer_email="a@example.com",
            plan="professional",
            product_name="Pro",
            credits=10_000,
            amount=Money(amount_minor=2500, currency="usd"),
            checkout_session_id=f"cs_{secrets.token_hex(6)}",
        )
        assert await issue_key(fact, pool, SECRETS) is True
        assert await issue_key(fact, pool, SECRETS) is False
        async with pool.acquire() as conn:
            outbox = await conn.fetch("SELECT payload FROM outbox")
            stored = await conn.fetchrow("SELECT * FROM keys")
        assert len(outbox) == 1
        plaintext = SECRETS.delivery.decrypt(outbox[0]["payload"]["key_ciphertext"].encode()).decode()
        assert keyformat.is_well_formed(plaintext)
        assert stored["key_hash"] == keyformat.hash_key(SECRETS.hash_secret, plaintext)
        assert plaintext not in str(dict(stored))
        assert plaintext not in str(outbox[0]["payload"])


class TestValidate:
    async def test_consuming_counts_units_and_records_usage(self, pool: asyncpg.Pool) -> None:
        key = await a_key(pool)
        verdict = await validate_key(Validate(key, 3, consume=True), pool, SECRETS)
        assert verdict.valid
        assert verdict.consumed == 3
        assert verdict.key
        assert verdict.key.quota_used == 3
        async with pool.acquire() as conn:
            usage = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'usage.recorded'")
        assert [u["payload"]["units"] for u in usage] == [3]

    async def test_checking_without_consuming_changes_nothing(self, pool: asyncpg.Pool) -> None:
        key = await a_key(pool)
        verdict = await validate_key(Validate(key, 5, consume=False), pool, SECRETS)
        assert verdict.valid
        assert verdict.consumed == 0
        assert verdict.key
        assert verdict.key.quota_used == 0

    async def test_a_request_that_does_not_fit_takes_nothing(self, pool: asyncpg.Pool) -> None:
        key = await a_key(pool, quota=10)
        await validate_key(Validate(key, 8, consume=True), pool, SECRETS)
        verdict = await validate_key(Validate(key, 3, consume=True), pool, SECRETS)
        assert verdict.reason == "quota_exceeded"
        assert verdict.key
        assert verdict.key.quota_used == 8

    async def test_unknown_and_malformed_keys_are_not_valid(self, pool: asyncpg.Pool) -> None:
        unknown = keyformat.generate("test")
        assert (await validate_key(Validate(unknown, 1, True), pool, SECRETS)).reason == "not_found"
        assert (await validate_key(Validate("tg_test_nope", 1, True), pool, SECRETS)).reason == "malformed"

    async def test_a_revoked_key_is_refused(self, pool: asyncpg.Pool) -> None:
        key = await a_key(pool)
        first = await validate_key(Validate(key, 1, True), pool, SECRETS)
        assert first.key is not None
        await revoke_key(first.key.id, "test", pool)
        assert (await validate_key(Validate(key, 1, True), pool, SECRETS)).reason == "revoked"

    async def test_concurrent_callers_never_get_more_than_the_quota(self, pool: asyncpg.Pool) -> None:
        key = await a_key(pool, quota=40)
        verdicts = await asyncio.gather(*(validate_key(Validate(key, 1, True), pool, SECRETS) for _ in range(64)))
        assert sum(v.valid for v in verdicts) == 40
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT quota_used FROM keys") == 40
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'usage.recorded'") == 40
