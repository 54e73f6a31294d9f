"""What the keys integration tests share: the secrets they run under, and a key stored
as the service stores one."""

import secrets
from uuid import uuid4

import asyncpg
from cryptography.fernet import Fernet, MultiFernet

from tollgate_keys import keyformat, repo
from tollgate_keys.domain import Limits
from tollgate_keys.handlers import KeySecrets

NO_LIMITS = Limits()
SECRETS = KeySecrets("test", b"integration-hash-secret", MultiFernet([Fernet(Fernet.generate_key())]))


async def a_key(
    pool: asyncpg.Pool, quota: int | None = 100, limits: Limits = NO_LIMITS, under: KeySecrets = SECRETS
) -> str:
    """A key of a new account, prepaid with `quota` or metered without one, stored under
    `under`'s hash secret; its plaintext."""
    plaintext = keyformat.generate("test")
    async with pool.acquire() as conn:
        await repo.insert_key(
            conn,
            key_id=uuid4(),
            account_id=f"cus_{secrets.token_hex(4)}",
            key_hash=under.hashed(plaintext),
            hash_secret_id=under.hash_secret_id,
            key_display=keyformat.display(plaintext),
            plan="p",
            billing="prepaid" if quota else "metered",
            quota_limit=quota,
            features=[],
            source_ref=f"cs_{secrets.token_hex(6)}",
            limits=limits,
        )
    return plaintext
