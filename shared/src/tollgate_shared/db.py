"""asyncpg pool per service schema, and the schema's migrations and SQL functions.

A service directory holds `migrations/NNN_*.sql`, which create and alter tables and are
applied once each, in name order, and `sql/*.sql`, the one current definition of each
function and trigger, applied again whenever its text changes.
"""

import hashlib
import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from .settings import ServiceSettings

SHARED = Path(__file__).resolve().parent / "schema"  # what every service's schema has
INFRA_MIGRATIONS = SHARED / "migrations"
Ssl = ssl.SSLContext | str | bool


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class TimedPool(asyncpg.Pool):  # type: ignore[misc]
    """A pool whose acquire gives up after `acquire_timeout` unless told otherwise: a
    request waits a bounded time for a connection, then is answered 503, instead of
    queueing without end behind a stuck or overloaded database."""

    def __init__(self, *args: Any, acquire_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=timeout if timeout is not None else self._acquire_timeout)


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    ssl: Ssl = "prefer",
    acquire_timeout: float | None = None,
    statement_timeout_ms: int | None = None,
) -> asyncpg.Pool:
    """A pool whose connections see only this service's schema (no service reads another's)."""
    settings = {"search_path": schema, "application_name": f"tollgate-{schema}"}
    if statement_timeout_ms:
        settings["statement_timeout"] = str(statement_timeout_ms)
    pool = TimedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=None,
        loop=None,
        connection_class=asyncpg.connection.Connection,
        record_class=asyncpg.Record,
        acquire_timeout=acquire_timeout,
        server_settings=settings,
        ssl=ssl,
    )
    await pool
    return pool


async def migrate(
    dsn: str,
    schema: str,
    schema_dir: Path,
    *,
    lock_timeout_s: float = 60,
    ssl: Ssl = "prefer",
    app_role: str | None = None,
) -> list[str]:
    """Bring `schema` up to date: the shared tables, then the service's migrations, then
    its SQL functions; then grant `app_role` what the service needs of them. Returns the
    names applied in this call.

    A session-level advisory lock per schema serialises replicas starting at once; a
    replica that waits longer than `lock_timeout_s` fails instead of hanging.
    """
    conn = await asyncpg.connect(dsn, ssl=ssl)
    lock = f"tollgate-migrate:{schema}"
    try:
        await conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute("SET lock_timeout = 0")
            applied = await _apply_migrations(conn, schema_dir)
            applied += await _apply_functions(conn, SHARED / "sql", "shared/")
            applied += await _apply_functions(conn, schema_dir / "sql")
            if app_role:
                await grant(conn, schema, app_role, schema_dir / "grants.sql")
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
    finally:
        await conn.close()


async def _apply_migrations(conn: asyncpg.Connection, schema_dir: Path) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    applied = []
    # Recorded as `<owner>/<file>`: `shared/…` for every schema's shared tables, the
    # service's name (`usage-sync/…`) for its own.
    owner = schema_dir.parent.name.removeprefix("tollgate_").replace("_", "-")
    files = [("shared", p) for p in sorted(INFRA_MIGRATIONS.glob("*.sql"))]
    files += [(owner, p) for p in sorted((schema_dir / "migrations").glob("*.sql"))]
    for who, path in files:
        name = f"{who}/{path.name}"
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied


async def _apply_functions(conn: asyncpg.Connection, sql_dir: Path, prefix: str = "") -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_functions "
        "(name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    current = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT name, sha256 FROM schema_functions")}
    applied = []
    for path in sorted(sql_dir.glob("*.sql")):
        text, name = path.read_text(), prefix + path.name
        digest = hashlib.sha256(text.encode()).hexdigest()
        if current.get(name) == digest:
            continue
        async with conn.transaction():
            await conn.execute(text)
            await conn.execute(
                "INSERT INTO schema_functions (name, sha256) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
                name,
                digest,
            )
        applied.append(f"sql/{name}")
    return applied


async def grant(conn: asyncpg.Connection, schema: str, role: str, extra: Path) -> None:
    """What the service's own role may do: read and write its tables, use their sequences,
    call its functions; never alter or drop them (it owns nothing). A service's
    `grants.sql` then takes back what its rules forbid (the ledger's journal is insert
    and read only, and so is every audit log)."""
    quoted = f'"{role}"'
    await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {quoted}')
    await conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {quoted}')
    await conn.execute(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {quoted}')
    await conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO {quoted}')
    await conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {quoted}")
    if extra.exists():
        await conn.execute(extra.read_text().replace(":role", quoted))


def role_of(dsn: str) -> str:
    """The role a connection string logs in as."""
    from urllib.parse import urlsplit

    user = urlsplit(dsn).username
    if not user:
        raise ValueError("the database URL names no role")
    return user


def affected(status: str) -> int:
    """Rows a statement touched, from asyncpg's command status ("UPDATE 3" -> 3)."""
    return int(status.split()[-1])


async def connect(s: "ServiceSettings", *, min_size: int | None = None, max_size: int | None = None) -> asyncpg.Pool:
    """A pool as `s` says: the service's role, its schema, TLS and timeouts. What the
    service itself and every command of it (CLIs, replays) connect with."""
    return await create_pool(
        s.database_url,
        s.schema_name,
        min_size=min_size or s.db_pool_min,
        max_size=max_size or s.db_pool_max,
        ssl=s.database_ssl(),
        acquire_timeout=s.db_acquire_timeout_s,
        statement_timeout_ms=s.db_statement_timeout_ms,
    )
