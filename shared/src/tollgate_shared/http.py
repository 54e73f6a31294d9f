"""HTTP conventions: every error is JSON `{"error": {"code", "message"}}` with the right
status, documented in OpenAPI by one model; text fields refuse control characters; every
request's body and line are capped before anything reads them."""

import asyncio
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import unquote

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class RequestBody(BaseModel):
    """What every request body is: exactly its fields, each of exactly its JSON type (no
    `false` read as 0, no number read as a time)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: what went wrong (e.g. invalid_request, unauthorized)")
    message: str = Field(description="For a person: what went wrong and what to do")
    details: list[FieldProblem] | None = Field(default=None, description="For invalid_request: each field's problem")


class ErrorBody(BaseModel):
    """Every error Tollgate answers, whatever the status."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Not JSON, or not what this route reads",
        401: "No credential, or not one this route accepts",
        403: "A credential that may not do this",
        404: "No such thing",
        405: "Not a method this route answers",
        409: "Conflicts with the current state",
        413: "Body over the cap",
        422: "A field that breaks its rule",
        429: "Too many requests: wait as Retry-After says",
        500: "Unexpected: logged",
        503: "Busy or a dependency unavailable: retry after Retry-After",
    }.items()
}


def _printable(value: str) -> str:
    """Text without control characters (NUL, escapes, line breaks) or lone surrogates:
    they have no place in an id, a name or a reason, PostgreSQL refuses NUL outright, and
    a lone surrogate is not even UTF-8."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return value


Text = Annotated[str, AfterValidator(_printable)]

ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$")


def _iso_instant(value: Any) -> Any:
    """A moment as ISO 8601 with its offset, and nothing else pydantic would read as one
    (a bare number is a Unix time to it, and to nobody who wrote a query string)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not ISO_INSTANT.match(value):
        raise ValueError("must be an ISO 8601 time with its offset, such as 2026-12-01T00:00:00Z")
    return datetime.fromisoformat(value)


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_instant)]


def validation_error(errors: Sequence[Mapping[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The status and body for a request that failed validation: 400 if it was not JSON at
    all, 422 with each field's problem otherwise. Shared by FastAPI routes and fast paths."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, error_body("malformed_json", "request body is not valid JSON")
    details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
    return 422, error_body("invalid_request", "request failed validation", details=details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's locations start with where the value came from ("body"); ours do not.
        errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} for e in exc.errors()]
        status, body = validation_error(errors)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        # Starlette's 405 says which methods the path has (Allow), as RFC 9110 asks.
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(req: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            log.warning("dependency unavailable", path=req.url.path, error=repr(exc))
            return JSONResponse(*UNAVAILABLE)
        log.error("unhandled error", path=req.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "unexpected error; it has been logged"), status_code=500)


# A database that is down, full or slow: the request is fine and can be tried again.
UNAVAILABLE = (
    error_body("unavailable", "the database is busy or unreachable; retry after Retry-After"),
    503,
    {"Retry-After": "1"},
)


def is_unavailable(exc: BaseException) -> bool:
    """No connection came within the pool's acquire timeout, a statement ran past the
    statement timeout, or PostgreSQL could not be reached."""
    return isinstance(
        exc,
        TimeoutError
        | asyncpg.QueryCanceledError
        | asyncpg.PostgresConnectionError
        | asyncpg.TooManyConnectionsError
        | asyncpg.CannotConnectNowError
        | asyncpg.InterfaceError
        | ConnectionError,
    )


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_SEGMENT = 256  # no id, path part or query value of Tollgate's is longer


class RequestGuard:
    """In front of an app: refuses, before any route reads them, a body over `max_body`
    (413, from its Content-Length or as it streams), control characters or over-long
    parts in the path or query (422), and a request that runs past `deadline_s` (503)."""

    def __init__(self, app: ASGIApp, *, max_body: int, deadline_s: float) -> None:
        self.app, self.max_body, self.deadline_s = app, max_body, deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if refusal := self._refusal(scope):
            await _answer(send, *refusal)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.deadline_s):
                await self.app(scope, self._capped(receive), tracked)
        except _TooLarge:
            if not started:
                await _answer(send, 413, "payload_too_large", f"request body over {self.max_body} bytes")
        except TimeoutError:
            log.warning("request past its deadline", path=scope.get("path"), deadline_s=self.deadline_s)
            if not started:
                await _answer(send, 503, "deadline_exceeded", "the request took too long; retry")

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            return 413, "payload_too_large", f"request body over {self.max_body} bytes"
        parts = [unquote(p) for p in scope["path"].split("/")]
        parts += [unquote(p) for p in scope.get("query_string", b"").decode("latin-1").replace("=", "&").split("&")]
        if any(CONTROL.search(p) for p in parts):
            return 422, "invalid_request", "the path or query holds a control character"
        if any(len(p) > MAX_SEGMENT for p in parts):
            return 422, "invalid_request", f"a path part or query value is over {MAX_SEGMENT} characters"
        return None

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _TooLarge(self.max_body)
            return message

        return capped


class _TooLarge(StarletteHTTPException):
    """Raised while the body streams in. An HTTPException, so FastAPI, which turns
    anything else raised while reading a body into a 400, answers it as the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def client_address(request: Request, trusted_proxies: int) -> str:
    """Who is calling: the peer, or behind `trusted_proxies` proxies (an ingress), the
    address the first of them saw. Entries further left in X-Forwarded-For were written by
    the caller, and say nothing."""
    peer = request.client.host if request.client else "unknown"
    if trusted_proxies <= 0:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    return hops[-trusted_proxies] if len(hops) >= trusted_proxies else peer
