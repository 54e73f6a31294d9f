"""Who is signed in: sign-up, emailed sign-in links, sessions, CSRF, limits.

A session cookie holds a random id and its HMAC under the session secret: a forged or
altered cookie is refused before any lookup, and the database keeps only the id's hash.
Every form carries a CSRF token: the session's for a signed-in customer, and before
sign-in one bound to a cookie of its own (double submit). Sign-in links are one-use,
short-lived, and only their hash is kept; requests for them are limited per address and
per email, and the answer never says whether an address has an account.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from fastapi import Request, Response

from tollgate_shared.http import ApiError

from . import repo

SESSION_COOKIE = "tg_session"
FORM_COOKIE = "tg_form"  # the double-submit CSRF cookie of forms before sign-in


@dataclass(frozen=True)
class Signed:
    """A signed-in customer, as a page sees them."""

    account_id: str
    csrf: str
    session_hash: bytes


class Cookies:
    def __init__(self, secret: bytes, *, secure: bool, session_days: int) -> None:
        self._secret, self.secure, self.session_days = secret, secure, session_days

    def _sign(self, value: str) -> str:
        mac = hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{value}.{mac}"

    def _verified(self, cookie: str | None) -> str | None:
        value, _, mac = (cookie or "").rpartition(".")
        if not value or not hmac.compare_digest(self._sign(value), f"{value}.{mac}"):
            return None
        return value

    def set_session(self, response: Response, session_id: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._sign(session_id),
            max_age=self.session_days * 86400,
            httponly=True,
            secure=self.secure,
            samesite="lax",
            path="/portal",
        )

    def session_id(self, request: Request) -> str | None:
        return self._verified(request.cookies.get(SESSION_COOKIE))

    def clear(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/portal", secure=self.secure, httponly=True, samesite="lax")

    def form_token(self, request: Request) -> str:
        """The CSRF token of a signed-out form: the form cookie's, or a new one."""
        return self._verified(request.cookies.get(FORM_COOKIE)) or secrets.token_urlsafe(24)

    def form_cookie(self, response: Response, token: str) -> None:
        """The cookie the token of a signed-out form must match (double submit)."""
        response.set_cookie(
            FORM_COOKIE, self._sign(token), max_age=3600, httponly=True, secure=self.secure, samesite="strict",
            path="/portal",
        )  # fmt: skip

    def check_form(self, request: Request, submitted: str) -> None:
        expected = self._verified(request.cookies.get(FORM_COOKIE))
        if not expected or not hmac.compare_digest(expected, submitted):
            raise ApiError(403, "csrf", "this form has expired: reload the page and send it again")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def signed_in(conn: asyncpg.Connection, cookies: Cookies, request: Request) -> Signed | None:
    session_id = cookies.session_id(request)
    if session_id is None:
        return None
    row = await repo.live_session(conn, digest(session_id), cookies.session_days)
    return None if row is None else Signed(row["account_id"], row["csrf"], digest(session_id))


def check_csrf(who: Signed, submitted: str) -> None:
    if not hmac.compare_digest(who.csrf, submitted):
        raise ApiError(403, "csrf", "this form has expired: reload the page and send it again")


async def start_session(conn: asyncpg.Connection, account_id: str) -> str:
    session_id = secrets.token_urlsafe(32)
    await repo.add_session(conn, digest(session_id), account_id, secrets.token_urlsafe(24))
    return session_id


async def new_link(conn: asyncpg.Connection, account_id: str, minutes: int) -> tuple[str, datetime]:
    """A one-use sign-in token (only its hash is kept) and when it stops working."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    await repo.add_link(conn, digest(token), account_id, expires)
    return token, expires


async def admit_request(conn: asyncpg.Connection, address: str, email: str, per_address: int, per_email: int) -> bool:
    """Whether another sign-up or sign-in request may go out now (fixed hourly windows)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    by_address = await repo.count_request(conn, "address", address, hour)
    by_email = await repo.count_request(conn, "email", email.lower(), hour)
    return by_address <= per_address and by_email <= per_email
