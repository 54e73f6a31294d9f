"""The notifier's SQL: emails sent, and where to write to each customer."""

from uuid import UUID

import asyncpg


async def already_sent(conn: asyncpg.Connection, event_id: UUID) -> bool:
    """Whether this event's email went out; locks its row so two deliveries take turns."""
    return bool(await conn.fetchval("SELECT true FROM emails WHERE event_id = $1 FOR UPDATE", event_id))


async def record_sent(conn: asyncpg.Connection, event_id: UUID, template: str, to: str, message_id: str) -> None:
    await conn.execute(
        "INSERT INTO emails (event_id, template, recipient, message_id) VALUES ($1, $2, $3, $4)",
        event_id,
        template,
        to,
        message_id,
    )


async def remember_contact(conn: asyncpg.Connection, account_id: str, email: str, name: str | None) -> None:
    await conn.execute(
        "INSERT INTO contacts (account_id, email, name) VALUES ($1, $2, $3) ON CONFLICT (account_id) "
        "DO UPDATE SET email = EXCLUDED.email, name = coalesce(EXCLUDED.name, contacts.name), updated_at = now()",
        account_id,
        email,
        name,
    )


async def contact(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT email, name FROM contacts WHERE account_id = $1", account_id
    )
    return row


async def forget_after_commit(conn: asyncpg.Connection, key_id: UUID) -> None:
    await conn.execute("INSERT INTO keys_to_forget (key_id) VALUES ($1) ON CONFLICT DO NOTHING", key_id)


async def keys_to_forget(conn: asyncpg.Connection, *, limit: int) -> list[UUID]:
    return [r["key_id"] for r in await conn.fetch("SELECT key_id FROM keys_to_forget ORDER BY sent_at LIMIT $1", limit)]


async def forgotten(conn: asyncpg.Connection, key_id: UUID) -> None:
    await conn.execute("DELETE FROM keys_to_forget WHERE key_id = $1", key_id)
