"""asyncpg pool per service schema, and the schema's migrations and SQL functions.

A service directory holds `migrations/NNN_*.sql`, which create and alter tables and are
applied once each, in name order, and `sql/*.sql`, the one current definition of each
function and trigger, applied again whenever its text changes.
"""

import hashlib
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


async def migrate(dsn: str, schema: str, service_dir: Path, *, lock_timeout_s: float = 60) -> list[str]:
    """Bring `schema` up to date: the shared tables, then the service's migrations, then
    its SQL functions. Returns the names applied in this call.

    A session-level advisory lock per schema serialises replicas starting at once; a
    replica that waits longer than `lock_timeout_s` fails instead of hanging.
    """
    conn = await asyncpg.connect(dsn)
    lock = f"tollgate-migrate:{schema}"
    try:
        await conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute("SET lock_timeout = 0")
            return await _apply_migrations(conn, service_dir) + await _apply_functions(conn, service_dir / "sql")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
    finally:
        await conn.close()


async def _apply_migrations(conn: asyncpg.Connection, service_dir: Path) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    applied = []
    files = sorted(INFRA_MIGRATIONS.glob("*.sql")) + sorted((service_dir / "migrations").glob("*.sql"))
    for path in files:
        name = f"{path.parent.parent.name}/{path.name}"
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied


async def _apply_functions(conn: asyncpg.Connection, sql_dir: Path) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_functions "
        "(name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    current = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT name, sha256 FROM schema_functions")}
    applied = []
    for path in sorted(sql_dir.glob("*.sql")):
        text = path.read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        if current.get(path.name) == digest:
            continue
        async with conn.transaction():
            await conn.execute(text)
            await conn.execute(
                "INSERT INTO schema_functions (name, sha256) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
                path.name,
                digest,
            )
        applied.append(f"sql/{path.name}")
    return applied


def affected(status: str) -> int:
    """Rows a statement touched, from asyncpg's command status ("UPDATE 3" -> 3)."""
    return int(status.split()[-1])
