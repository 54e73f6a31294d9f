"""POST /v1/keys/validate as a bare ASGI path, in front of the FastAPI app.

Validation is on the hot path of every call our users' customers make. Profiling put
FastAPI's routing and dependency resolution at several times the cost of the
validation itself, so this one route is served directly: the same pydantic model, the
same error bodies (shared with the FastAPI handlers), a body-size cap. Everything else,
including this route's documentation, stays with FastAPI.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from tollgate_shared.http import UNAVAILABLE, ApiError, error_body, is_unavailable, validation_error
from tollgate_shared.logging import get_logger

from . import metrics
from .api import ValidateRequest

log = get_logger(__name__)
PATH = "/v1/keys/validate"
MAX_BODY = 8 * 1024
Handler = Callable[[ValidateRequest, dict[bytes, bytes]], Awaitable[dict[str, Any]]]


class ValidateFastPath:
    def __init__(self, app: ASGIApp, handle: Handler) -> None:
        self.app, self.handle = app, handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            metrics.REJECTED.labels("413").inc()
            await _send_json(send, 413, error_body("payload_too_large", f"request body over {MAX_BODY} bytes"))
            return
        started = time.perf_counter()
        try:
            request = ValidateRequest.model_validate_json(body)
        except ValidationError as exc:
            metrics.REJECTED.labels("422").inc()
            await _send_json(send, *validation_error(exc.errors()))  # type: ignore[arg-type]
            return
        try:
            answer = await self.handle(request, dict(scope.get("headers") or ()))
        except ApiError as refused:
            extra = [(k.encode(), v.encode()) for k, v in (refused.headers or {}).items()]
            await _send_json(send, refused.status, error_body(refused.code, refused.message), extra)
            return
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("validate: database unavailable", error=repr(exc))
                answer, status, retry = UNAVAILABLE
                await _send_json(send, status, answer, [(k.encode(), v.encode()) for k, v in retry.items()])
                return
            log.exception("validate failed")
            await _send_json(send, 500, error_body("internal_error", "unexpected error; it has been logged"))
            return
        metrics.VALIDATE_SECONDS.observe(time.perf_counter() - started)
        await _send_json(send, 200, answer)


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = pydantic_core.to_json(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload})
