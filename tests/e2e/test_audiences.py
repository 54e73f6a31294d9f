"""Every route of every service, read from the OpenAPI documents the running services
serve, refuses every audience but its own.

A route's audience is its tag: public (anyone), customer (one of the customer's API
keys, for their own account), operator (a named operator token), internal (a Tollgate
service's token); health is anyone's. Public and customer routes are served on a
service's public listener; operator and internal ones only on its admin listener.
"""

import asyncio
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tollgate_devstack.config import SERVICES
from tollgate_devstack.demo import Demo

AUDIENCES = {"public", "customer", "operator", "internal", "health"}
REFUSED = {401, 403}


@dataclass(frozen=True)
class Route:
    service: str
    listener: str  # "public" or "admin"
    method: str
    path: str
    audiences: frozenset[str]
    has_body: bool
    says: str = ""  # the first sentence of its description

    def __str__(self) -> str:
        return f"{self.service} {self.listener} {self.method.upper()} {self.path}"


@dataclass(frozen=True)
class Customer:
    account: str
    key: str


def routes_of(service: str, listener: str, document: dict[str, Any]) -> list[Route]:
    return [
        Route(
            service,
            listener,
            method,
            path,
            frozenset(operation.get("tags", [])) & AUDIENCES,
            "requestBody" in operation,
            first_sentence(operation.get("description", "")),
        )
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    return flat.split(". ")[0].rstrip(".") if flat else ""


@pytest.fixture(scope="module")
def every_route(stack: dict[str, Any]) -> list[Route]:
    found = []
    for service in SERVICES:
        for listener, url in (("public", stack[service]), ("admin", stack[f"{service}_admin"])):
            document = httpx.get(f"{url}/openapi.json", timeout=10).json()
            found += routes_of(service, listener, document)
    return found


@pytest.fixture(scope="module")
def two_customers(stack: dict[str, Any]) -> tuple[Customer, Customer]:
    async def buy() -> Customer:
        async with Demo(stack, say=lambda _: None) as demo:
            email = f"aud+{secrets.token_hex(4)}@example.com"
            session = await demo.buy("starter", email)
            await demo.pay(session["id"])
            key, _ = await demo.key_from_email(email)
            await demo.balance_equal(session["customer"], 1_000)
            return Customer(session["customer"], key)

    return asyncio.run(buy()), asyncio.run(buy())


def url_of(stack: dict[str, Any], route: Route, account: str) -> str:
    """The route's URL with every path parameter filled: the account given, and values
    that name nothing for the rest, so an admitted call finds nothing to change."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return {
            "account_id": account,
            "key_id": str(uuid.uuid4()),
            "tx_id": "0",
            "period": "not-a-period",
        }.get(name, f"audience-probe-{secrets.token_hex(3)}")

    base = stack[route.service if route.listener == "public" else f"{route.service}_admin"]
    return base + re.sub(r"\{([^}]+)\}", value, route.path)


async def call(http: httpx.AsyncClient, url: str, route: Route, credential: str | None) -> int:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    r = await http.request(route.method.upper(), url, headers=headers, json={} if route.has_body else None)
    assert r.status_code < 500, f"{route} answered {r.status_code}: {r.text[:300]}"
    return r.status_code


def test_every_route_has_exactly_one_audience_and_the_right_listener(every_route: list[Route]) -> None:
    assert len(every_route) > 40
    for route in every_route:
        assert route.audiences, f"{route} names no audience"
        if "health" not in route.audiences:
            assert len(route.audiences - {"internal"}) == 1 or route.audiences == {"internal"}, route
        if route.listener == "public":
            assert route.audiences <= {"public", "customer", "health"}, f"{route} is on the public listener"
        else:
            assert route.audiences <= {"operator", "internal", "health"}, f"{route} is on the admin listener"


async def test_customer_routes_open_only_to_the_accounts_own_keys(
    stack: dict[str, Any], every_route: list[Route], two_customers: tuple[Customer, Customer]
) -> None:
    me, other = two_customers
    wrong = {
        "no credential": None,
        "a malformed key": "tg_test_" + "x" * 28,
        "an operator token": stack["operator_token"],
        "a service token": stack["portal_token"],
    }
    checked = 0
    async with httpx.AsyncClient(timeout=15) as http:
        for route in (r for r in every_route if "customer" in r.audiences):
            mine = url_of(stack, route, me.account)
            for what, credential in wrong.items():
                assert await call(http, mine, route, credential) == 401, f"{route} with {what}"
            if route.service == "portal":
                continue  # the portal's customer is a signed-in browser: tests/e2e/test_portal_browser.py
            if "{account_id}" in route.path:
                assert await call(http, mine, route, other.key) == 403, f"{route} with another's key"
            assert await call(http, mine, route, me.key) not in REFUSED, f"{route} with the customer's own key"
            checked += 1
    assert checked >= 8


async def test_operator_and_internal_routes_open_only_to_their_tokens(
    stack: dict[str, Any], every_route: list[Route], two_customers: tuple[Customer, Customer]
) -> None:
    me, _ = two_customers
    services: dict[str, str] = stack["launcher"].secrets["internal_tokens"]
    checked = 0
    async with httpx.AsyncClient(timeout=15) as http:
        for route in (r for r in every_route if r.listener == "admin" and "health" not in r.audiences):
            url = url_of(stack, route, me.account)
            for what, credential in {
                "no credential": None,
                "a made-up token": secrets.token_urlsafe(32),
                "the customer's own key": me.key,
            }.items():
                assert await call(http, url, route, credential) == 401, f"{route} with {what}"
            by_operator = await call(http, url, route, stack["operator_token"])
            assert (by_operator in REFUSED) == ("operator" not in route.audiences), f"{route}: operator {by_operator}"
            by_services = {name: await call(http, url, route, token) for name, token in services.items()}
            admitted = any(status not in REFUSED for status in by_services.values())
            assert admitted == ("internal" in route.audiences), f"{route}: services {by_services}"
            checked += 1
    assert checked >= 25


async def test_only_the_notifier_may_take_a_new_keys_sealed_plaintext(stack: dict[str, Any]) -> None:
    tokens: dict[str, str] = stack["launcher"].secrets["internal_tokens"]
    url = f"{stack['keys_admin']}/internal/v1/deliveries/{uuid.uuid4()}"
    async with httpx.AsyncClient(timeout=15) as http:
        for name, token in tokens.items():
            r = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == (404 if name == "notifier" else 401), name


async def test_public_routes_need_no_credential(stack: dict[str, Any], every_route: list[Route]) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        for route in (r for r in every_route if r.audiences & {"public", "health"}):
            assert await call(http, url_of(stack, route, "cus_nobody"), route, None) not in REFUSED, route


async def test_admin_listeners_serve_no_public_route_and_public_ones_no_admin_route(stack: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        for service in SERVICES:
            r = await http.get(f"{stack[service]}/v1/admin/accounts/cus_x/keys")
            assert r.status_code == 404, service
            assert (await http.get(f"{stack[service]}/metrics")).status_code == 404, service
        r = await http.post(f"{stack['keys_admin']}/v1/keys/validate", json={"apiKey": "tg_test_x"})
        assert r.status_code == 404


README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- routes: generated by tests/e2e/test_audiences.py -->", "<!-- routes: end -->"
WHO = {
    "public": "anyone",
    "customer": "the customer, with one of their API keys (own account only)",
    "operator": "an operator token",
    "internal": "a Tollgate service's token",
}


def route_table(routes: list[Route]) -> str:
    lines = ["| who may call | listener | service | route | what it does |", "|---|---|---|---|---|"]
    order = {"public": 0, "customer": 1, "operator": 2, "internal": 3}
    listed = sorted(
        (r for r in routes if "health" not in r.audiences),
        key=lambda r: (min(order[a] for a in r.audiences), r.service, r.path, r.method),
    )
    for r in listed:
        who = " or ".join(WHO[a] for a in sorted(r.audiences, key=order.__getitem__))
        service = r.service.replace("_", "-")
        lines.append(f"| {who} | {r.listener} | {service} | `{r.method.upper()} {r.path}` | {r.says} |")
    return "\n".join(lines)


def test_the_readme_lists_every_route_by_audience(every_route: list[Route]) -> None:
    """The README's table is this test's output: UPDATE_ROUTES=1 rewrites it."""
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    table = "\n" + route_table(every_route) + "\n"
    if os.environ.get("UPDATE_ROUTES") == "1":
        README.write_text(text[:start] + table + text[end:])
        text = README.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:end] == table, "README's route table is stale: run this test with UPDATE_ROUTES=1"
