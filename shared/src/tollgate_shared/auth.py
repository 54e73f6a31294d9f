"""Who may call what. Every route has one audience, and a guard that refuses the others:

- public: anyone (the webhook, validate, checkout, health): no credential;
- customer: a customer, by one of their API keys (`Authorization: Bearer tg_…`), for
  their own account only;
- operator: the people who run Tollgate (admin, finance), by a named operator token;
- internal: Tollgate's services calling each other, by a named internal token.

Operator and internal routes are served only on a service's admin listener, which the
public Kubernetes Service does not expose. Tokens are named (`name:token,name:token`) so
the audit log says who did what; comparisons are constant-time.
"""

import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import httpx
from fastapi import Header, Request
from pydantic import SecretStr
from starlette.types import Scope

from .http import ApiError

Audience = Literal["public", "customer", "operator", "internal"]


@dataclass(frozen=True)
class Caller:
    audience: Audience
    name: str  # a token's name, or the customer's account id
    account_id: str | None = None


class Tokens:
    """Named bearer tokens from a setting such as `alice:3f9…,bob:8c1…`."""

    def __init__(self, setting: SecretStr | None) -> None:
        pairs = [p.strip() for p in (setting.get_secret_value() if setting else "").split(",") if p.strip()]
        self._named = [(name.strip(), token.strip().encode()) for name, _, token in (p.partition(":") for p in pairs)]

    def __bool__(self) -> bool:
        return bool(self._named)

    def names(self) -> list[str]:
        return [name for name, _ in self._named]

    def who(self, presented: str) -> str | None:
        """The token's name, comparing with every token so timing says nothing."""
        found = None
        for name, token in self._named:
            if hmac.compare_digest(presented.encode(), token):
                found = name
        return found


def bearer(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def staff(operators: Tokens, internals: Tokens | None = None) -> Callable[..., Awaitable[Caller]]:
    """A guard admitting operators, and internal callers too if `internals` is given."""

    async def guard(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
        return await admitted(request, _admit(operators, internals, authorization))

    return guard


def staff_on_scope(operators: Tokens, internals: Tokens | None = None) -> Callable[[Scope], None]:
    """The same guard for a route served in front of FastAPI (tollgate_shared.fastpath):
    refuses with 401, or notes the caller where the audit log reads it."""

    def guard(scope: Scope) -> None:
        authorization = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
        scope.setdefault("state", {})["caller"] = _admit(operators, internals, authorization or None)

    return guard


async def admitted(request: Request, caller: Caller, *, changes: bool = True) -> Caller:
    """Note who the caller is, where the audit log reads it; on a listener that audits, a
    call that changes something is recorded before it may act (tollgate_shared.audit)."""
    request.state.caller = caller
    if changes and (before_acting := getattr(request.state, "before_acting", None)) is not None:
        await before_acting()
    return caller


def _admit(operators: Tokens, internals: Tokens | None, authorization: str | None) -> Caller:
    presented = bearer(authorization)
    if presented and (name := operators.who(presented)):
        return Caller("operator", name)
    if presented and internals is not None and (name := internals.who(presented)):
        return Caller("internal", name)
    raise ApiError(401, "unauthorized", "an operator or service token is required")


def internal(
    internals: Tokens, only: frozenset[str] | None = None, *, changes: bool = True
) -> Callable[..., Awaitable[Caller]]:
    """A guard admitting only Tollgate's own services; with `only`, only those named.
    `changes=False` for routes that only read though they take POST (a lookup whose input
    must stay out of URLs): their calls are audited after the answer, as reads are."""

    async def guard(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
        presented = bearer(authorization)
        name = internals.who(presented) if presented else None
        if name is None or (only is not None and name not in only):
            raise ApiError(401, "unauthorized", "a service token is required")
        return await admitted(request, Caller("internal", name), changes=changes)

    return guard


class Identify(Protocol):
    """Whose account an API key is, or None if it is no live key."""

    def __call__(self, api_key: str) -> Awaitable[str | None]: ...


def customer(identify: Identify) -> Callable[..., Awaitable[Caller]]:
    """A guard admitting a customer, by any live API key of theirs, to their own account
    (the route's `account_id`) only."""

    async def guard(request: Request, account_id: str, authorization: Annotated[str | None, Header()] = None) -> Caller:
        presented = bearer(authorization)
        owner = await identify(presented) if presented else None
        if owner is None:
            raise ApiError(401, "unauthorized", "send one of your API keys as a bearer token")
        if owner != account_id:
            raise ApiError(403, "forbidden", "a key opens only its own account")
        return await admitted(request, Caller("customer", owner, owner))

    return guard


def key_holder(identify: Identify) -> Callable[..., Awaitable[Caller]]:
    """A guard admitting a customer by any live API key of theirs, for routes that act on
    the key's own account (no account in the path)."""

    async def guard(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
        presented = bearer(authorization)
        owner = await identify(presented) if presented else None
        if owner is None:
            raise ApiError(401, "unauthorized", "send one of your API keys as a bearer token")
        return await admitted(request, Caller("customer", owner, owner))

    return guard


class KeysDirectory:
    """Asks the keys service whose an API key is (an internal route), remembering answers
    for a short while: customer reads on other services cost one call per key a minute."""

    def __init__(self, keys_url: str, token: str, *, ttl_s: float = 60, size: int = 10_000) -> None:
        self._http = httpx.AsyncClient(base_url=keys_url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        self._ttl, self._size = ttl_s, size
        self._seen: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def __call__(self, api_key: str) -> str | None:
        now = time.monotonic()
        if (hit := self._seen.get(api_key)) is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            r = await self._http.post("/internal/v1/identify", json={"apiKey": api_key})
        except httpx.HTTPError:
            raise ApiError(503, "unavailable", "cannot check the key right now; try again") from None
        if r.status_code != 200:
            raise ApiError(503, "unavailable", "cannot check the key right now; try again")
        owner = r.json().get("accountId")
        self._seen[api_key] = (now, owner)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return owner  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._http.aclose()
