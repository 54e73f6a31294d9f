"""Who did what on a service's admin listener, in `audit_log`.

A call that changes something (POST, PUT, PATCH, DELETE) is recorded before it acts:
once the route's guard has admitted the caller, the intent row (who, what, from where,
no status yet) is committed, and only then does the handler run. If the row cannot be
written the call is refused with 503 and nothing happens: no record, no action. After
the answer, an outcome row with the status follows under the same `request` id, so a
crash between the two leaves an intent without an outcome, never an action without a
record. A read, and a call refused before it could act, get the outcome row alone: a
crash can lose those, and nothing changed. Health and metrics are not recorded.

Rows are written in groups, one statement and one commit for every row that arrived
while the previous group was written: an admin route that takes thousands of requests a
second (the ledger's transfers) would otherwise pay a commit per request for its audit
rows alone. Under light load a group is one row, written at once.
"""

import asyncio
import uuid
from collections.abc import Callable
from contextlib import suppress

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http import ApiError
from .logging import get_logger

log = get_logger(__name__)
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_GROUP = 2_000
# request, caller, audience, method, path, query, status (None: an intent), client
Row = tuple[str, str, str, str, str, str, int | None, str | None]
Pending = tuple[Row, "asyncio.Future[None] | None"]


class AuditLog:
    """The middleware: every request on the admin listener, recorded by `writer`. It leaves
    `before_acting` in the request's state, which the guard awaits once it has admitted
    the caller (tollgate_shared.auth.admitted): the intent of a call that changes something."""

    def __init__(self, app: ASGIApp, writer: "AuditWriter") -> None:
        self.app, self.writer = app, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in QUIET:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["before_acting"] = lambda: self.writer.ahead(scope)
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
        self._rows: asyncio.Queue[Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def ahead(self, scope: Scope) -> None:
        """Commit the intent of the call in `scope` (its caller already admitted); raise
        503 if it cannot be written, so the call does not act unrecorded."""
        if scope["method"] not in CHANGES:
            return
        committed = asyncio.get_running_loop().create_future()
        self._queue(self._row(scope, None), committed)
        try:
            await committed
        except Exception:
            raise ApiError(
                503,
                "unavailable",
                "the call could not be recorded, so it was not made; retry after Retry-After",
                {"Retry-After": "1"},
            ) from None

    def record(self, scope: Scope, status: int) -> None:
        """The outcome of the call in `scope`, written soon after its answer."""
        self._queue(self._row(scope, status), None)

    async def drain(self) -> None:
        """Write what waits, and stop the writer (on shutdown)."""
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError):
                await self._writer
        await self._write_group()

    def _row(self, scope: Scope, status: int | None) -> Row:
        state = scope.setdefault("state", {})
        # An intent and its outcome share the id; a call recorded once draws its own.
        request = state.setdefault("audit_request", str(uuid.uuid4()))
        caller, client = state.get("caller"), scope.get("client")
        return (
            request,
            caller.name if caller else "anonymous",
            caller.audience if caller else "none",
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1")[:2000],
            status,
            client[0] if client else None,
        )

    def _queue(self, row: Row, committed: "asyncio.Future[None] | None") -> None:
        self._rows.put_nowait((row, committed))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="audit-writer")

    async def _write(self) -> None:
        while True:
            await self._write_group()
            if self._rows.empty():
                return
            await asyncio.sleep(0)

    async def _write_group(self) -> None:
        group: list[Pending] = []
        while not self._rows.empty() and len(group) < MAX_GROUP:
            group.append(self._rows.get_nowait())
        if not group:
            return
        failure: Exception | None = None
        try:
            pool = self.pool()
            if pool is None:
                raise RuntimeError("no database pool yet")
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO audit_log (request, caller, audience, method, path, query, status, client) "
                    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
                    "  $7::int[], $8::text[])",
                    *(list(column) for column in zip(*(row for row, _ in group), strict=True)),
                )
        except Exception as exc:
            failure = exc
            log.exception("audit records failed", count=len(group), paths=sorted({r[4] for r, _ in group})[:5])
        for _, committed in group:
            if committed is None or committed.done():
                continue
            if failure is None:
                committed.set_result(None)
            else:
                committed.set_exception(failure)
