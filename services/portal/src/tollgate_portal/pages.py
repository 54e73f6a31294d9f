"""The portal's pages. Every page is server-rendered; every change is a POST form with a
CSRF token; every number comes from the service that owns it, for the signed-in
customer's own account only (keys are checked to be theirs before any change)."""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tollgate_shared.http import ApiError, client_address
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime

from . import auth, charts, repo
from .auth import Cookies, Signed
from .clients import Services
from .config import Settings
from .links import send_sign_in_link

log = get_logger(__name__)
TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NOTICES = {
    "link-sent": "If that address has an account, a sign-in link is on its way. It works once, for 15 minutes.",
    "signed-up": "Welcome! Your account is ready, and a sign-in link is on its way to you as well.",
    "threshold": "Your low-balance threshold is saved.",
    "revoked": "The key is revoked: it no longer works.",
    "recharge": "Your auto-recharge rule is saved.",
    "purchase": "Thank you! Your payment is being confirmed; credits and keys appear here in a moment.",
    "top-up-requested": "Your top-up is on its way: the credits are pending until the charge goes through.",
    "top-up-succeeded": "Your top-up went through.",
    "top-up-failed": "Your card was declined: nothing was charged and no credits were added.",
    "signed-out": "You are signed out.",
    "signed-out-everywhere": "You are signed out on every device.",
}
GRACE_HOURS = (0, 1, 24, 72, 168)
# Pages answer people: their errors are pages too (the health routes' are JSON).
HTML_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"text/html": {}, "application/json": {}}}
    for status, text in {
        400: "Not a form this page reads",
        401: "Not signed in",
        403: "A form from another page or an expired one (CSRF)",
        404: "No such thing on your account",
        405: "Not a method this page answers",
        409: "Conflicts with the account's state",
        410: "A sign-in link used or expired",
        413: "Body over the cap",
        422: "A field that breaks its rule",
        429: "Too many requests",
        500: "Unexpected: logged",
        503: "A service the portal needs is unavailable: retry",
    }.items()
}


@dataclass(frozen=True)
class Portal:
    settings: Settings
    runtime: Runtime
    services: Services
    cookies: Cookies

    @property
    def base(self) -> str:
        return "/portal"


def router(portal: Portal) -> APIRouter:
    r = APIRouter(prefix="/portal", default_response_class=HTMLResponse)
    s = portal.settings

    async def who(request: Request) -> Signed | None:
        async with portal.runtime.pool.acquire() as conn:
            return await auth.signed_in(conn, portal.cookies, request)

    async def session(request: Request) -> Signed:
        """A dependency: the signed-in customer, or 401 before anything else is read."""
        signed = await who(request)
        if signed is None:
            raise ApiError(401, "unauthorized", "sign in first")
        return signed

    Session = Annotated[Signed, Depends(session)]  # noqa: N806 - a type, named as one

    def required(signed: Signed, csrf: str | None = None) -> Signed:
        if csrf is not None:
            auth.check_csrf(signed, csrf)
        return signed

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return TEMPLATES.TemplateResponse(request, name, {"notice": notice, **context}, status_code=status)

    def back(notice: str, anchor: str = "") -> RedirectResponse:
        return RedirectResponse(f"/portal/?notice={notice}{anchor}", status_code=303)

    async def their_key(signed: Signed, key_id: str) -> dict[str, Any]:
        """One of the signed-in customer's keys, or 404: nobody changes another's key."""
        for key in await portal.services.keys_of(signed.account_id):
            if key["id"] == key_id:
                return key
        raise ApiError(404, "key_not_found", "no such key on your account")

    @r.get("/", tags=["public"])
    async def home(request: Request) -> Response:
        """The dashboard when signed in; sign-up and sign-in otherwise."""
        signed = await who(request)
        if signed is None:
            csrf = portal.cookies.form_token(request)
            response = page(request, "welcome.html", {"csrf": csrf})
            portal.cookies.form_cookie(response, csrf)
            return response
        return page(request, "dashboard.html", await dashboard(portal, signed))

    @r.post("/sign-up", status_code=303, response_class=RedirectResponse, tags=["public"])
    async def sign_up(
        request: Request,
        name: Annotated[str, Form(min_length=1, max_length=200)],
        email: Annotated[str, Form(pattern=EMAIL, max_length=254)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        """A new account (a Stripe customer), and a sign-in link to its address."""
        portal.cookies.check_form(request, csrf)
        name = " ".join(name.split())
        async with portal.runtime.pool.acquire() as conn:
            if not await _admitted(conn, portal, request, email):
                raise ApiError(429, "too_many_requests", "too many sign-ups or sign-ins: try again in an hour")
            known = await repo.customer_by_email(conn, email)
        if known is None:
            account = await portal.services.new_account(email.lower(), name, f"signup:{email.lower()}")
            async with portal.runtime.pool.acquire() as conn, conn.transaction():
                await repo.add_customer(conn, account, email, name)
                await send_sign_in_link(conn, s, account, email.lower(), name, first=True)
        else:
            async with portal.runtime.pool.acquire() as conn, conn.transaction():
                await send_sign_in_link(conn, s, known.account_id, known.email, known.name)
        # The same answer whether the address was new: a sign-up says nothing of others.
        return back("signed-up")

    @r.post("/sign-in", status_code=303, response_class=RedirectResponse, tags=["public"])
    async def sign_in(
        request: Request,
        email: Annotated[str, Form(pattern=EMAIL, max_length=254)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        """A sign-in link by email, if the address has an account (the answer is the same either way)."""
        portal.cookies.check_form(request, csrf)
        async with portal.runtime.pool.acquire() as conn, conn.transaction():
            if not await _admitted(conn, portal, request, email):
                raise ApiError(429, "too_many_requests", "too many sign-in requests: try again in an hour")
            known = await repo.customer_by_email(conn, email)
            if known is not None:
                await send_sign_in_link(conn, s, known.account_id, known.email, known.name)
        return back("link-sent")

    @r.get("/sign-in/{token}", tags=["public"])
    async def confirm(request: Request, token: str) -> Response:
        """The emailed link: a button that signs in. A link is used by the POST, not by
        opening it, so a mail scanner following links cannot use it up."""
        csrf = portal.cookies.form_token(request)
        response = page(request, "confirm.html", {"token": token, "csrf": csrf})
        portal.cookies.form_cookie(response, csrf)
        return response

    @r.post("/sign-in/{token}", status_code=303, response_class=RedirectResponse, tags=["public"])
    async def use_link(request: Request, token: str, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        portal.cookies.check_form(request, csrf)
        async with portal.runtime.pool.acquire() as conn, conn.transaction():
            account = await repo.use_link(conn, auth.digest(token))
            if account is None:
                raise ApiError(410, "link_used_or_expired", "this link has been used or has expired: ask for a new one")
            session_id = await auth.start_session(conn, account)
        response = RedirectResponse("/portal/", status_code=303)
        portal.cookies.set_session(response, session_id)
        return response

    @r.post("/sign-out", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def sign_out(request: Request, me: Session, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        signed = required(me, csrf)
        async with portal.runtime.pool.acquire() as conn:
            await repo.revoke_session(conn, signed.session_hash)
        response = RedirectResponse("/portal/?notice=signed-out", status_code=303)
        portal.cookies.clear(response)
        return response

    @r.post("/sign-out-everywhere", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def sign_out_everywhere(
        request: Request, me: Session, csrf: Annotated[str, Form(max_length=100)]
    ) -> Response:
        """Every browser signed in to this account is signed out."""
        signed = required(me, csrf)
        async with portal.runtime.pool.acquire() as conn:
            await repo.revoke_all_sessions(conn, signed.account_id)
        response = RedirectResponse("/portal/?notice=signed-out-everywhere", status_code=303)
        portal.cookies.clear(response)
        return response

    @r.post("/threshold", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def threshold(
        request: Request,
        me: Session,
        csrf: Annotated[str, Form(max_length=100)],
        low_balance_threshold: Annotated[int, Form(ge=0, le=10**12)],
    ) -> Response:
        """The credits under which the customer is emailed."""
        signed = required(me, csrf)
        await portal.services.set_threshold(signed.account_id, low_balance_threshold)
        return back("threshold", "#balance")

    @r.get("/usage.csv", tags=["customer"], response_class=Response)
    async def usage_csv(request: Request, me: Session, days: int = 1) -> Response:
        """The numbers behind a usage chart: units per key per hour (days=1) or per day."""
        signed = me
        if days not in (1, 30):
            raise ApiError(422, "invalid_request", "days is 1 or 30")
        s_, _ = await usage_series(portal, signed.account_id, days)
        body = charts.to_csv(s_, hourly=days == 1)
        name = f"usage-{'24h' if days == 1 else '30d'}.csv"
        return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @r.post("/keys", tags=["customer"])
    async def create_key(request: Request, me: Session, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        """Another key; its value is shown on the next page, once, and kept nowhere."""
        signed = required(me, csrf)
        made = await portal.services.create_key(signed.account_id)
        return _shown(request, made["apiKey"], made["key"], "Your new key")

    @r.post("/keys/{key_id}/rotate", tags=["customer"])
    async def rotate(
        request: Request,
        me: Session,
        key_id: str,
        csrf: Annotated[str, Form(max_length=100)],
        grace_hours: Annotated[int, Form(ge=0, le=168)] = 24,
    ) -> Response:
        """A successor, shown once; the old key keeps working for the grace period."""
        signed = required(me, csrf)
        await their_key(signed, key_id)
        made = await portal.services.rotate_key(key_id, grace_hours * 3600)
        return _shown(request, made["apiKey"], made["successor"], "Your rotated key", grace_hours)

    @r.post("/keys/{key_id}/revoke", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def revoke(
        request: Request, me: Session, key_id: str, csrf: Annotated[str, Form(max_length=100)]
    ) -> Response:
        signed = required(me, csrf)
        await their_key(signed, key_id)
        await portal.services.revoke_key(key_id)
        return back("revoked", "#keys")

    @r.post("/buy", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def buy(
        request: Request,
        me: Session,
        csrf: Annotated[str, Form(max_length=100)],
        plan: Annotated[str, Form(max_length=64)],
    ) -> Response:
        """A pack, or the metered plan, through Stripe Checkout."""
        signed = required(me, csrf)
        async with portal.runtime.pool.acquire() as conn:
            buyer = await repo.customer(conn, signed.account_id)
        assert buyer is not None
        url = await portal.services.purchase(signed.account_id, plan, buyer.email)
        return RedirectResponse(url, status_code=303)

    @r.post("/top-up", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def top_up(
        request: Request,
        me: Session,
        csrf: Annotated[str, Form(max_length=100)],
        dollars: Annotated[int, Form(ge=5, le=1000)],
    ) -> Response:
        """Credits charged to the card on file, pending until the charge settles."""
        signed = required(me, csrf)
        made = await portal.services.top_up(signed.account_id, dollars * 100, "portal", secrets.token_hex(16))
        return back(f"top-up-{made['state']}", "#balance")

    @r.post("/billing", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def billing(request: Request, me: Session, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        """Stripe's Billing Portal: invoices and payment methods."""
        signed = required(me, csrf)
        return RedirectResponse(await portal.services.billing_portal(signed.account_id), status_code=303)

    @r.post("/auto-recharge", status_code=303, response_class=RedirectResponse, tags=["customer"])
    async def auto_recharge(
        request: Request,
        me: Session,
        csrf: Annotated[str, Form(max_length=100)],
        threshold: Annotated[int, Form(ge=0, le=10**9)],
        dollars: Annotated[int, Form(ge=5, le=1000)],
        daily_cap: Annotated[int, Form(ge=1, le=24)] = 1,
        enabled: Annotated[bool, Form()] = False,
    ) -> Response:
        """ "When available falls below this, buy that": saving it also lifts a pause."""
        signed = required(me, csrf)
        async with portal.runtime.pool.acquire() as conn:
            await repo.save_rule(
                conn, signed.account_id, enabled, threshold, dollars * 100, min(daily_cap, s.auto_recharge_daily_cap)
            )
        return back("recharge", "#auto-recharge")

    return r


def _shown(request: Request, api_key: str, key: dict[str, Any], title: str, grace: int | None = None) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request, "key_shown.html", {"api_key": api_key, "key": key, "title": title, "grace": grace, "notice": None}
    )
    # The page holds a secret: no cache may keep it, no back button may show it again.
    response.headers["Cache-Control"] = "no-store"
    return response


async def _admitted(conn: Any, portal: Portal, request: Request, email: str) -> bool:
    s = portal.settings
    address = client_address(request, s.trusted_proxies)
    return await auth.admit_request(conn, address, email, s.links_per_address_per_hour, s.links_per_email_per_hour)


async def usage_series(portal: Portal, account: str, days: int) -> tuple[charts.Series, dict[str, str]]:
    keys = await portal.services.keys_of(account)
    names = {k["id"]: k["display"] for k in keys}
    since = datetime.now(UTC) - timedelta(days=days, hours=1)
    async with portal.runtime.pool.acquire() as conn:
        rows = await repo.usage_since(conn, account, since)
    return charts.series(rows, names, days=days), names


async def dashboard(portal: Portal, signed: Signed) -> dict[str, Any]:
    """Everything the dashboard shows, each part from the service that owns it."""
    account, services = signed.account_id, portal.services
    async with portal.runtime.pool.acquire() as conn:
        me = await repo.customer(conn, account)
        rule = await repo.rule(conn, account)
        last = await repo.last_used(conn, account)
        recharges = await repo.recharges_of(conn, account)
    balance = await services.balance(account)
    keys = await services.keys_of(account)
    for k in keys:
        k["last_used"] = last.get(_uuid(k["id"]))
    day, _ = await usage_series(portal, account, 1)
    month, _ = await usage_series(portal, account, 30)
    return {
        "me": me,
        "csrf": signed.csrf,
        "balance": balance,
        "grants": await services.grants(account) if balance else [],
        "keys": keys,
        "plans": await services.plans(),
        "card": await services.saved_card(account),
        "top_ups": (await services.top_ups(account))[:5],
        "metered": await services.metered(account),
        "rule": rule,
        "recharges": recharges,
        "daily_cap_max": portal.settings.auto_recharge_daily_cap,
        "grace_hours": GRACE_HOURS,
        "day_chart": charts.svg(day, "Units per hour, last 24 hours", hourly=True),
        "day_legend": charts.legend(day),
        "month_chart": charts.svg(month, "Units per day, last 30 days", hourly=False),
        "month_legend": charts.legend(month),
    }


def _uuid(value: str) -> UUID:
    return UUID(value)
