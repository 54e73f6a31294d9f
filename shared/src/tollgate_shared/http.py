"""HTTP conventions: every error is JSON `{"error": {"code", "message"}}` with the right status."""

import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def validation_error(errors: Sequence[Mapping[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The status and body for a request that failed validation: 400 if it was not JSON at
    all, 422 with each field's problem otherwise. Shared by FastAPI routes and fast paths."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, error_body("malformed_json", "request body is not valid JSON")
    details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
    return 422, error_body("invalid_request", "request failed validation", details=details)


def bearer_token_guard(token: str) -> Callable[..., None]:
    """A FastAPI dependency admitting only `Authorization: Bearer <token>` (constant-time compare)."""

    def require(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "unauthorized", "a valid admin bearer token is required")

    return require


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's locations start with where the value came from ("body"); ours do not.
        errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} for e in exc.errors()]
        status, body = validation_error(errors)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=req.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "unexpected error; it has been logged"), status_code=500)
