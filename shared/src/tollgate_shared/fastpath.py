"""One hot JSON route served as bare ASGI, in front of a FastAPI app.

Profiling put FastAPI's routing, dependency resolution and middleware stack at several
times the cost of the work behind a route that does little per request (keys'
validation, the ledger's transfer). Such a route is served directly: the same pydantic
model and the same error bodies as the FastAPI handlers, a body-size cap, and the same
guard. Everything else, including the route's documentation, stays with FastAPI, whose
route of the same path documents it.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from .audit import AuditWriter
from .http import UNAVAILABLE, ApiError, error_body, is_unavailable, validation_error
from .logging import get_logger

log = get_logger(__name__)
M = TypeVar("M", bound=BaseModel)
Answer = tuple[int, dict[str, Any]]


class FastRoute(Generic[M]):
    """`method path` answered by `handle(request, scope)` -> (status, body); anything else
    goes on to `app`. `guard(scope)` raises ApiError to refuse (401) before the body is
    read; `observe(status, seconds)` sees every answer (metrics). On an admin listener
    `audit` records the call as tollgate_shared.audit does behind FastAPI: the intent of a
    call that changes something before `handle`, its outcome once the answer is sent."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        method: str,
        path: str,
        model: type[M],
        handle: Callable[[M, Scope], Awaitable[Answer]],
        guard: Callable[[Scope], None] | None = None,
        observe: Callable[[int, float], None] | None = None,
        audit: AuditWriter | None = None,
        max_body: int = 8 * 1024,
    ) -> None:
        self.app, self.method, self.path, self.model = app, method, path, model
        self.handle, self.guard, self.observe, self.audit, self.max_body = handle, guard, observe, audit, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, body, headers = await self._answer(scope, receive)
        if self.observe is not None:
            self.observe(status, time.perf_counter() - started)
        await send_json(send, status, body, headers)
        if self.audit is not None:
            self.audit.record(scope, status)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            if self.guard is not None:
                self.guard(scope)
            raw = await read_body(receive, self.max_body)
            if raw is None:
                return 413, error_body("payload_too_large", f"request body over {self.max_body} bytes"), {}
            try:
                request = self.model.model_validate_json(raw)
            except ValidationError as exc:
                return *validation_error(exc.errors()), {}  # type: ignore[arg-type]
            if self.audit is not None:
                await self.audit.ahead(scope)
            status, body = await self.handle(request, scope)
            return status, body, {}
        except ApiError as refused:
            return refused.status, error_body(refused.code, refused.message), refused.headers or {}
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("database unavailable", path=self.path, error=repr(exc))
                body, status, headers = UNAVAILABLE
                return status, body, headers
            log.exception("request failed", path=self.path)
            return 500, error_body("internal_error", "unexpected error; it has been logged"), {}


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past `limit` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = pydantic_core.to_json(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
