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
