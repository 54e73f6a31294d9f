"""The keys service's SQL."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from tollgate_shared import db

from .domain import Limits

NO_LIMITS = Limits()

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


async def learn_balance(
    conn: asyncpg.Connection, account_id: str, available: int, usage_total: int, version: int
) -> bool:
    """Take the ledger's balance of the account's credits if it is newer than ours."""
    changed = await conn.fetchval(
        "INSERT INTO account_credits (account_id, ledger_available, ledger_usage_total, ledger_version) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET "
        "  ledger_available = EXCLUDED.ledger_available, ledger_usage_total = EXCLUDED.ledger_usage_total, "
        "  ledger_version = EXCLUDED.ledger_version, updated_at = now() "
        "WHERE account_credits.ledger_version < EXCLUDED.ledger_version RETURNING true",
        account_id,
        available,
        usage_total,
        version,
    )
    return bool(changed)


async def credits_view(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT *, ledger_available - (consumed_total - ledger_usage_total) AS available "
        "FROM account_credits WHERE account_id = $1",
        account_id,
    )
    return row


async def insert_key(
    conn: asyncpg.Connection,
    *,
    key_id: UUID,
    account_id: str,
    key_hash: bytes,
    hash_secret_id: str,
    key_display: str,
    plan: str,
    billing: str,
    quota_limit: int | None,
    features: list[str],
    source_ref: str,
    limits: Limits = NO_LIMITS,
    subscription_id: str | None = None,
    payment_intent_id: str | None = None,
    customer_email: str | None = None,
    product_name: str | None = None,
) -> bool:
    """False if a key for this source (Checkout Session) already exists."""
    if billing == "prepaid":
        # The account's credits row exists before any key can consume against it, so a
        # first consumption never has to create it (which could race another batch).
        await conn.execute("INSERT INTO account_credits (account_id) VALUES ($1) ON CONFLICT DO NOTHING", account_id)
    return (
        await conn.fetchval(
            "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, quota_limit, features, "
            "  source_ref, requests_per_minute, requests_per_hour, requests_per_day, units_per_minute, "
            "  subscription_id, payment_intent_id, customer_email, product_name, hash_secret_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
            "ON CONFLICT (source_ref) DO NOTHING RETURNING true",
            key_id,
            account_id,
            key_hash,
            key_display,
            plan,
            billing,
            quota_limit,
            features,
            source_ref,
            limits.requests_per_minute,
            limits.requests_per_hour,
            limits.requests_per_day,
            limits.units_per_minute,
            subscription_id,
            payment_intent_id,
            customer_email,
            product_name,
            hash_secret_id,
        )
        is not None
    )


@dataclass(frozen=True)
class Consumed:
    """What the `consume` function decided, and the key's state after it."""

    outcome: str
    key_id: UUID | None
    account_id: str | None
    plan: str | None
    billing: str | None
    quota_limit: int | None
    quota_used: int | None
    expires_at: datetime | None
    rate_limit: int | None
    rate_remaining: int | None
    rate_reset: datetime | None


async def check(conn: asyncpg.Connection, key_hash: bytes, units: int) -> Consumed:
    """Whether `units` could be consumed now, and why not, changing nothing. Consuming
    goes through consume_and_record() in the batcher; both decide in consume_batch()."""
    row = await conn.fetchrow(
        "SELECT * FROM consume_batch(ARRAY[$1::bytea], ARRAY[$2::bigint], false)", key_hash, units
    )
    return decided(row)[1]


def decided(row: asyncpg.Record) -> tuple[int, Consumed]:
    """One row of consume_batch(): the request's 0-based position in its batch, and the decision."""
    fields = dict(row)
    position = fields.pop("idx") - 1
    return position, Consumed(**fields)


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


async def find_live_by_hash(conn: asyncpg.Connection, key_hash: bytes) -> KeyRow | None:
    """A key that is neither revoked nor expired."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM keys WHERE key_hash = $1 AND status <> 'revoked' "
        "AND (expires_at IS NULL OR expires_at > now())",
        key_hash,
    )
    return KeyRow(**row) if row else None


async def set_expiry(conn: asyncpg.Connection, key_id: UUID, expires_at: datetime | None) -> KeyRow | None:
    row = await conn.fetchrow(
        f"UPDATE keys SET expires_at = $2 WHERE id = $1 AND status <> 'revoked' RETURNING {COLUMNS}", key_id, expires_at
    )
    return KeyRow(**row) if row else None


async def schedule_suspension(conn: asyncpg.Connection, subscription_id: str, grace_s: float) -> int:
    """Keys of the subscription stop after the grace, unless already scheduled sooner."""
    result = await conn.execute(
        "UPDATE keys SET suspend_at = coalesce(suspend_at, now() + make_interval(secs => $2)) "
        "WHERE subscription_id = $1 AND status <> 'revoked'",
        subscription_id,
        grace_s,
    )
    return db.affected(result)


async def lift_subscription_hold(conn: asyncpg.Connection, subscription_id: str) -> int:
    """No invoice left unpaid: the billing hold goes; an operator's suspension (status) stays."""
    result = await conn.execute(
        "UPDATE keys SET suspend_at = NULL WHERE subscription_id = $1 AND suspend_at IS NOT NULL",
        subscription_id,
    )
    return db.affected(result)


async def invoice_unpaid(conn: asyncpg.Connection, invoice_id: str, subscription_id: str) -> bool:
    """A failed attempt at an invoice; True unless the invoice was paid already (paid stays paid)."""
    await conn.execute(
        "INSERT INTO subscription_invoices (invoice_id, subscription_id, paid) VALUES ($1, $2, false) "
        "ON CONFLICT (invoice_id) DO NOTHING",
        invoice_id,
        subscription_id,
    )
    return not await conn.fetchval("SELECT paid FROM subscription_invoices WHERE invoice_id = $1", invoice_id)


async def invoice_paid(conn: asyncpg.Connection, invoice_id: str, subscription_id: str) -> bool:
    """Record the invoice paid; True if the subscription has no unpaid invoice left."""
    await conn.execute(
        "INSERT INTO subscription_invoices (invoice_id, subscription_id, paid) VALUES ($1, $2, true) "
        "ON CONFLICT (invoice_id) DO UPDATE SET paid = true, updated_at = now()",
        invoice_id,
        subscription_id,
    )
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM subscription_invoices WHERE subscription_id = $1 AND NOT paid)",
        subscription_id,
    )


async def set_status(conn: asyncpg.Connection, key_id: UUID, status: str) -> KeyRow | None:
    """An operator's suspend/resume. A revoked key stays revoked; a billing hold stays too."""
    row = await conn.fetchrow(
        f"UPDATE keys SET status = $2 WHERE id = $1 AND status <> 'revoked' RETURNING {COLUMNS}",
        key_id,
        status,
    )
    return KeyRow(**row) if row else None


async def locked(conn: asyncpg.Connection, key_id: UUID) -> asyncpg.Record | None:
    """The whole key row, locked for a change that depends on what it holds."""
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM keys WHERE id = $1 FOR UPDATE", key_id)
    return row


async def insert_successor(
    conn: asyncpg.Connection,
    old_id: UUID,
    new_id: UUID,
    key_hash: bytes,
    hash_secret_id: str,
    key_display: str,
    grace_s: float,
) -> None:
    """A key that takes over from `old_id`: same account, plan, quota, limits and current
    windows (so a rotation cannot double a rate limit). The old key becomes its alias
    until the grace ends, then expires."""
    await conn.execute(
        "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, quota_limit, quota_used, "
        "  features, source_ref, requests_per_minute, requests_per_hour, requests_per_day, units_per_minute, "
        "  subscription_id, payment_intent_id, status, expires_at, customer_email, product_name, "
        "  minute_start, minute_requests, minute_units, hour_start, hour_requests, day_start, day_requests, "
        "  hash_secret_id) "
        "SELECT $2, account_id, $3, $4, plan, billing, quota_limit, quota_used, features, 'rotate:' || id, "
        "  requests_per_minute, requests_per_hour, requests_per_day, units_per_minute, subscription_id, "
        "  payment_intent_id, status, expires_at, customer_email, product_name, "
        "  minute_start, minute_requests, minute_units, hour_start, hour_requests, day_start, day_requests, $5 "
        "FROM keys WHERE id = $1",
        old_id,
        new_id,
        key_hash,
        key_display,
        hash_secret_id,
    )
    await conn.execute(
        "UPDATE keys SET rotated_to = $2, expires_at = LEAST(coalesce(expires_at, 'infinity'), "
        "  now() + make_interval(secs => $3)) WHERE id = $1",
        old_id,
        new_id,
        grace_s,
    )


async def keys_where(conn: asyncpg.Connection, column: str, value: str) -> list[UUID]:
    assert column in ("subscription_id", "payment_intent_id")
    return [
        r["id"] for r in await conn.fetch(f"SELECT id FROM keys WHERE {column} = $1 AND status <> 'revoked'", value)
    ]


async def source_handled(conn: asyncpg.Connection, source_ref: str) -> bool:
    """Whether this Checkout Session already issued a key or topped one up."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM keys WHERE source_ref = $1) "
            "OR EXISTS (SELECT 1 FROM key_packs WHERE source_ref = $1)",
            source_ref,
        )
    )


async def pack_key(conn: asyncpg.Connection, account_id: str, plan: str) -> KeyRow | None:
    """The customer's key for this prepaid plan, locked so two top-ups add up: one the
    customer can still be given (not revoked, not rotated away), held or not."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM keys WHERE account_id = $1 AND plan = $2 AND billing = 'prepaid' "
        "AND status <> 'revoked' AND rotated_to IS NULL ORDER BY created_at LIMIT 1 FOR UPDATE",
        account_id,
        plan,
    )
    return KeyRow(**row) if row else None


async def add_pack(
    conn: asyncpg.Connection, source_ref: str, key_id: UUID, account_id: str, payment_intent_id: str | None,
    credits: int, paid_minor: int,
) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO key_packs (source_ref, key_id, account_id, payment_intent_id, credits, paid_minor) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        source_ref,
        key_id,
        account_id,
        payment_intent_id,
        credits,
        paid_minor,
    )


async def top_up(conn: asyncpg.Connection, key_id: UUID, credits: int) -> int:
    quota: int = await conn.fetchval(
        "UPDATE keys SET quota_limit = quota_limit + $2 WHERE id = $1 RETURNING quota_limit", key_id, credits
    )
    return quota


async def pack_paid_by(conn: asyncpg.Connection, payment_intent_id: str) -> asyncpg.Record | None:
    """The pack a payment bought, locked: what went back of its money decides its end."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM key_packs WHERE payment_intent_id = $1 FOR UPDATE", payment_intent_id
    )
    return row


async def record_refunded(conn: asyncpg.Connection, source_ref: str, refunded_total: int) -> None:
    await conn.execute(
        "UPDATE key_packs SET refunded_minor = GREATEST(refunded_minor, $2) WHERE source_ref = $1",
        source_ref,
        refunded_total,
    )


async def record_lost_dispute(conn: asyncpg.Connection, source_ref: str, dispute_id: str, amount: int) -> None:
    await conn.execute(
        "UPDATE key_packs SET disputed_minor = disputed_minor + $3, lost_disputes = lost_disputes || $2 "
        "WHERE source_ref = $1 AND NOT $2 = ANY(lost_disputes)",
        source_ref,
        dispute_id,
        amount,
    )


async def end_pack(conn: asyncpg.Connection, source_ref: str) -> bool:
    """End a pack whose money went back; its key keeps no quota the pack brought that was
    not used. False if it had ended before."""
    pack = await conn.fetchrow(
        "UPDATE key_packs SET ended_at = now() WHERE source_ref = $1 AND ended_at IS NULL RETURNING key_id, credits",
        source_ref,
    )
    if pack is None:
        return False
    await conn.execute(
        "UPDATE keys SET quota_limit = GREATEST(quota_used, quota_limit - $2) WHERE id = $1",
        pack["key_id"],
        pack["credits"],
    )
    return True


async def has_live_pack(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM key_packs WHERE account_id = $1 AND ended_at IS NULL)", account_id
        )
    )


async def hold_prepaid_keys(conn: asyncpg.Connection, account_id: str) -> int:
    """The account has no paid credits left: its prepaid keys stop now (a billing hold)."""
    result = await conn.execute(
        "UPDATE keys SET suspend_at = now() WHERE account_id = $1 AND billing = 'prepaid' AND status <> 'revoked' "
        "AND suspend_at IS NULL",
        account_id,
    )
    return db.affected(result)


async def lift_prepaid_hold(conn: asyncpg.Connection, account_id: str) -> int:
    """Paid credits again: the account's prepaid keys work again (an operator's suspension stays)."""
    result = await conn.execute(
        "UPDATE keys SET suspend_at = NULL WHERE account_id = $1 AND billing = 'prepaid' AND suspend_at IS NOT NULL",
        account_id,
    )
    return db.affected(result)


async def seal_for_delivery(conn: asyncpg.Connection, key_id: UUID, sealed: str) -> None:
    await conn.execute("INSERT INTO key_deliveries (key_id, sealed) VALUES ($1, $2)", key_id, sealed)


async def sealed_delivery(conn: asyncpg.Connection, key_id: UUID) -> str | None:
    found: str | None = await conn.fetchval("SELECT sealed FROM key_deliveries WHERE key_id = $1", key_id)
    return found


async def delivered(conn: asyncpg.Connection, key_id: UUID) -> None:
    await conn.execute("DELETE FROM key_deliveries WHERE key_id = $1", key_id)


async def grow_quota_for_top_up(conn: asyncpg.Connection, top_up_id: str, account_id: str, credits: int) -> int:
    """Every live prepaid key of the account may use a top-up's credits; once per top-up."""
    new = await conn.fetchval(
        "INSERT INTO top_up_quota (top_up_id, account_id, credits) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true",
        top_up_id,
        account_id,
        credits,
    )
    if not new:
        return 0
    result = await conn.execute(
        "UPDATE keys SET quota_limit = quota_limit + $2 WHERE account_id = $1 AND billing = 'prepaid' "
        "AND status <> 'revoked' AND quota_limit IS NOT NULL",
        account_id,
        credits,
    )
    return db.affected(result)


async def shrink_quota_for_failed_top_up(conn: asyncpg.Connection, top_up_id: str) -> int:
    """A failed top-up's credits are gone: the quota it added goes back, never below what
    was used."""
    row = await conn.fetchrow(
        "UPDATE top_up_quota SET taken_back = true WHERE top_up_id = $1 AND NOT taken_back "
        "RETURNING account_id, credits",
        top_up_id,
    )
    if row is None:
        return 0
    result = await conn.execute(
        "UPDATE keys SET quota_limit = greatest(quota_limit - $2, quota_used) WHERE account_id = $1 "
        "AND billing = 'prepaid' AND quota_limit IS NOT NULL",
        row["account_id"],
        row["credits"],
    )
    return db.affected(result)


async def newest_live(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's newest key that is not revoked: what another key of theirs copies."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT plan, billing, features, subscription_id, customer_email, product_name FROM keys "
        "WHERE account_id = $1 AND status <> 'revoked' ORDER BY created_at DESC LIMIT 1",
        account_id,
    )
    return row


async def move_to_secret(
    db: asyncpg.Pool | asyncpg.Connection, old_hashes: list[bytes], key_hash: bytes, secret_id: str
) -> bool:
    """The key stored under one of `old_hashes`, stored under `key_hash` instead."""
    moved = await db.fetchval(
        "UPDATE keys SET key_hash = $1, hash_secret_id = $2 WHERE key_hash = ANY($3::bytea[]) RETURNING true",
        key_hash,
        secret_id,
        old_hashes,
    )
    return bool(moved)


async def live_keys_by_secret(conn: asyncpg.Connection) -> dict[str | None, int]:
    """How many keys that still work are under each hash secret (by its id; None: not recorded)."""
    rows = await conn.fetch(
        "SELECT hash_secret_id, count(*) AS keys FROM keys WHERE status <> 'revoked' "
        "AND (expires_at IS NULL OR expires_at > now()) GROUP BY hash_secret_id"
    )
    return {r["hash_secret_id"]: r["keys"] for r in rows}
