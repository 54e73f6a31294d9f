"""asyncpg pool per service schema, and plain-SQL migrations."""

import json
from pathlib import Path

import asyncpg

INFRA_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see only this service's schema (no service reads another's)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"tollgate-{schema}"},
    )
    assert pool is not None
    return pool


async def migrate(dsn: str, schema: str, service_migrations: Path) -> list[str]:
    """Apply the shared infra migrations, then the service's, each once, in name order.

    A session-level advisory lock serialises replicas starting at the same time.
    Returns the names applied in this call.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('tollgate-migrate'))")
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            applied = []
            files = sorted(INFRA_MIGRATIONS.glob("*.sql")) + sorted(service_migrations.glob("*.sql"))
            for path in files:
                name = f"{path.parent.parent.name}/{path.name}"
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('tollgate-migrate'))")
    finally:
        await conn.close()


def affected(status: str) -> int:
    """Rows a statement touched, from asyncpg's command status ("UPDATE 3" -> 3)."""
    return int(status.split()[-1])
