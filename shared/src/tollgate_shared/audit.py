"""Who did what on a service's admin listener: one row per request, in `audit_log`.

Recorded after the answer, with its status, in a transaction of its own: a refused or
failed request is recorded too. The caller is what the route's guard found (a token's
name); a request no guard admitted is recorded as anonymous. Health and metrics are not
actions and are not recorded.
"""

from collections.abc import Callable

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import get_logger

log = get_logger(__name__)
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


class AuditLog:
    def __init__(self, app: ASGIApp, pool: Callable[[], asyncpg.Pool | None]) -> None:
        self.app, self.pool = app, pool

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
            await self._record(scope, status)

    async def _record(self, scope: Scope, status: int) -> None:
        pool = self.pool()
        if pool is None:
            return
        caller = (scope.get("state") or {}).get("caller")
        client = scope.get("client")
        try:
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO audit_log (caller, audience, method, path, query, status, client) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    caller.name if caller else "anonymous",
                    caller.audience if caller else "none",
                    scope["method"],
                    scope["path"],
                    scope.get("query_string", b"").decode("latin-1")[:2000],
                    status,
                    client[0] if client else None,
                )
        except Exception:
            log.exception("audit record failed", path=scope["path"], status=status)
