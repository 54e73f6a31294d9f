"""The keys service's SQL."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

COLUMNS = "id, account_id, key_display, plan, billing, quota_limit, quota_used, status, expires_at, features"


@dataclass(frozen=True)
class KeyRow:
    id: UUID
    account_id: str
    key_display: str
    plan: str
    billing: str
    quota_limit: int | None
    quota_used: int
    status: str
    expires_at: datetime | None
    features: list[str]


async def insert_key(
    conn: asyncpg.Connection,
    *,
    key_id: UUID,
    account_id: str,
    key_hash: bytes,
    key_display: str,
    plan: str,
    billing: str,
    quota_limit: int | None,
    features: list[str],
    source_ref: str,
) -> bool:
    """False if a key for this source (Checkout Session) already exists."""
    return (
        await conn.fetchval(
            "INSERT INTO keys "
            "(id, account_id, key_hash, key_display, plan, billing, quota_limit, features, source_ref) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source_ref) DO NOTHING RETURNING true",
            key_id,
            account_id,
            key_hash,
            key_display,
            plan,
            billing,
            quota_limit,
            features,
            source_ref,
        )
        is not None
    )


async def consume(conn: asyncpg.Connection, key_hash: bytes, units: int) -> KeyRow | None:
    """Take `units` from the key's quota if, and only if, all of it fits.

    One conditional UPDATE: PostgreSQL's row lock serialises concurrent consumers of
    one key, and each re-checks the condition on the latest row version, so no
    interleaving of callers or replicas can take a unit beyond the limit.
    """
    row = await conn.fetchrow(
        f"UPDATE keys SET quota_used = quota_used + $2 "
        f"WHERE key_hash = $1 AND status = 'active' AND (expires_at IS NULL OR expires_at > now()) "
        f"  AND (quota_limit IS NULL OR quota_used + $2 <= quota_limit) RETURNING {COLUMNS}",
        key_hash,
        units,
    )
    return KeyRow(**row) if row else None


async def find_by_hash(conn: asyncpg.Connection, key_hash: bytes) -> KeyRow | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM keys WHERE key_hash = $1", key_hash)
    return KeyRow(**row) if row else None


async def revoke(conn: asyncpg.Connection, key_id: UUID) -> KeyRow | None:
    row = await conn.fetchrow(
        f"UPDATE keys SET status = 'revoked', revoked_at = now() WHERE id = $1 AND status <> 'revoked' "
        f"RETURNING {COLUMNS}",
        key_id,
    )
    return KeyRow(**row) if row else None


async def find_by_id(conn: asyncpg.Connection, key_id: UUID) -> KeyRow | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM keys WHERE id = $1", key_id)
    return KeyRow(**row) if row else None


async def list_for_account(conn: asyncpg.Connection, account_id: str) -> list[KeyRow]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM keys WHERE account_id = $1 ORDER BY created_at", account_id)
    return [KeyRow(**r) for r in rows]
