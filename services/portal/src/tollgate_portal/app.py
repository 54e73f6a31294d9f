"""The one place that wires the portal."""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from tollgate_shared.contracts.topics import PORTAL_EVENTS
from tollgate_shared.http import ApiError
from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service

from . import consumers, pages
from .auth import Cookies
from .clients import Services, Upstream
from .config import Settings

SCHEMA = Path(__file__).resolve().parent / "schema"
SPEC = ServiceSpec("portal", "Tollgate portal", subscriptions=consumers.SUBSCRIPTIONS, publishes=(PORTAL_EVENTS,))
STATIC = Path(__file__).with_name("static")


def services_of(settings: Settings) -> Services:
    token = settings.keys_token.get_secret_value()  # the portal's one internal token, known to each service
    return Services(
        keys=Upstream(settings.keys_internal_url, token, "the keys service"),
        ledger=Upstream(settings.ledger_url, token, "the ledger"),
        checkout=Upstream(settings.checkout_url, token, "checkout"),
        usage_sync=Upstream(settings.usage_sync_url, token, "usage-sync"),
    )


def consumer_deps(settings: Settings) -> consumers.Deps:
    return consumers.Deps(services_of(settings), settings.auto_recharge_daily_cap)


def build_app(settings: Settings) -> Service:
    deps = consumer_deps(settings)
    runtime = Runtime(SPEC, settings, SCHEMA, deps)
    cookies = Cookies(
        settings.session_secret.get_secret_value().encode(),
        secure=settings.cookie_secure,
        session_days=settings.session_days,
    )
    portal = pages.Portal(settings, runtime, deps.services, cookies)
    svc = service(
        runtime, public=[pages.router(portal)], admin=[], on_stop=[deps.services.close], public_errors=pages.HTML_ERRORS
    )
    app = svc.public
    assert isinstance(app, FastAPI)
    app.mount("/portal/static", StaticFiles(directory=STATIC), name="static")

    async def html_error(request: Request, exc: ApiError) -> Response:
        """Pages answer a person: an HTML page with the same status and message."""
        return pages.TEMPLATES.TemplateResponse(
            request, "error.html", {"status": exc.status, "message": exc.message, "notice": None},
            status_code=exc.status, headers=exc.headers,
        )  # fmt: skip

    async def html_invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = ", ".join(str(e.get("loc", ("?",))[-1]) for e in exc.errors())
        return await html_error(request, ApiError(422, "invalid_request", f"please check: {fields}"))

    app.add_exception_handler(ApiError, html_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, html_invalid)  # type: ignore[arg-type]
    app.add_api_route(
        "/", lambda: HTMLResponse(status_code=307, headers={"Location": "/portal/"}), include_in_schema=False
    )
    return svc
