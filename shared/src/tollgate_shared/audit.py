"""Who did what on a service's admin listener: one row per request, in `audit_log`.

Recorded after the answer, with its status: a refused or failed request is recorded
too. The caller is what the route's guard found (a token's name); a request no guard
admitted is recorded as anonymous. Health and metrics are not actions and are not
recorded.

Rows are written in groups, one statement and one commit for every row that arrived
while the previous group was written: an admin route that takes thousands of requests a
second (the ledger's transfers) would otherwise pay a commit per request for its audit
row alone. Under light load a group is one row, written at once.
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import get_logger

log = get_logger(__name__)
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_GROUP = 2_000
Row = tuple[str, str, str, str, str, int, str | None]


class AuditLog:
    """The middleware: every request on the admin listener, recorded by `writer`."""

    def __init__(self, app: ASGIApp, writer: "AuditWriter") -> None:
        self.app, self.writer = app, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in QUIET:
            await self.app(scope, receive, send)
            return
        status = 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            self.writer.record(scope, status)


class AuditWriter:
    """Writes audit rows in groups (see the module's docstring)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool | None]) -> None:
        self.pool = pool
        self._rows: asyncio.Queue[Row] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def record(self, scope: Scope, status: int) -> None:
        caller = (scope.get("state") or {}).get("caller")
        client = scope.get("client")
        self._rows.put_nowait(
            (
                caller.name if caller else "anonymous",
                caller.audience if caller else "none",
                scope["method"],
                scope["path"],
                scope.get("query_string", b"").decode("latin-1")[:2000],
                status,
                client[0] if client else None,
            )
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="audit-writer")

    async def drain(self) -> None:
        """Write what waits, and stop the writer (on shutdown)."""
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError):
                await self._writer
        await self._write_group()

    async def _write(self) -> None:
        while True:
            await self._write_group()
            if self._rows.empty():
                return
            await asyncio.sleep(0)

    async def _write_group(self) -> None:
        group: list[Row] = []
        while not self._rows.empty() and len(group) < MAX_GROUP:
            group.append(self._rows.get_nowait())
        pool = self.pool()
        if not group or pool is None:
            return
        try:
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO audit_log (caller, audience, method, path, query, status, client) "
                    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
                    "  $6::int[], $7::text[])",
                    *(list(column) for column in zip(*group, strict=True)),
                )
        except Exception:
            log.exception("audit records failed", count=len(group), paths=sorted({r[3] for r in group})[:5])
