"""What keeps one caller from hurting the service or other customers: anonymous checkouts
are limited, only the gateway says what a call was, a full validation queue answers 503
at once, and every operator action is on the record."""

import asyncio
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.processes import free_port, wait_until

from .helpers import rows


async def test_anonymous_checkouts_per_email_are_limited(stack: dict[str, Any]) -> None:
    email = f"limit+{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(timeout=15) as http:

        async def buy(address: str) -> httpx.Response:
            return await http.post(
                f"{stack['checkout']}/v1/checkout/sessions", json={"plan": "starter", "email": address}
            )

        answers = [(await buy(email)).status_code for _ in range(5)]
        refused = await buy(email)
        other = await buy(f"limit+{secrets.token_hex(4)}@example.com")
    assert answers == [201] * 5
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "too_many_checkouts")
    assert int(refused.headers["retry-after"]) > 0
    assert other.status_code == 201


class TestGatewayOnly:
    """Meters bill on the route, method and status of a call: with a gateway configured,
    only the gateway may state them, or a customer could bill their calls as cheaper ones."""

    @pytest.fixture
    def key(self, stack: dict[str, Any]) -> str:
        async def buy() -> str:
            async with Demo(stack, say=lambda _: None) as demo:
                email = f"gw+{secrets.token_hex(4)}@example.com"
                session = await demo.buy("starter", email)
                await demo.pay(session["id"])
                return (await demo.key_from_email(email))[0]

        return asyncio.run(buy())

    def test_a_call_described_by_anyone_but_the_gateway_is_403_and_consumes_nothing(
        self, stack: dict[str, Any], key: str
    ) -> None:
        described = {"apiKey": key, "units": 1, "route": "/v1/cheap", "method": "GET", "status": 200}
        url = f"{stack['keys']}/v1/keys/validate"
        for headers in ({}, {"X-Tollgate-Gateway": "not-the-gateway"}):
            r = httpx.post(url, json=described, headers=headers)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "gateway_only")
        r = httpx.post(url, json=described, headers={"X-Tollgate-Gateway": stack["gateway_token"]})
        assert r.status_code == 200 and r.json()["isValid"]
        r = httpx.post(url, json={"apiKey": key, "units": 1, "consume": False})
        assert r.json()["quota"]["used"] == 1  # the refused ones took nothing


@pytest.fixture
def tiny_queue(stack: dict[str, Any]) -> Iterator[str]:
    """A keys process that holds at most one consuming validation waiting."""
    launcher, port = stack["launcher"], free_port()
    env = launcher.env_for("keys", stack["database_url"], stack["kafka"]) | {
        "KEYS_HTTP_PORT": str(port),
        "KEYS_ADMIN_PORT": str(free_port()),
        "KEYS_CONSUMERS_ENABLED": "false",
        "KEYS_VALIDATE_MAX_WAITING": "1",
    }
    launcher.procs.start("keys-tiny-queue", [sys.executable, "-m", "tollgate_keys"], env)
    url = f"http://127.0.0.1:{port}"
    wait_until("keys-tiny-queue", lambda: httpx.get(f"{url}/readyz").status_code == 200, 60)
    yield url
    launcher.procs.stop("keys-tiny-queue")


async def test_a_full_validation_queue_answers_503_with_retry_after_at_once(
    stack: dict[str, Any], tiny_queue: str
) -> None:
    async with Demo(stack, say=lambda _: None) as demo:
        email = f"busy+{secrets.token_hex(4)}@example.com"
        session = await demo.buy("professional", email)
        await demo.pay(session["id"])
        key, _ = await demo.key_from_email(email)
    async with httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=64)) as http:
        answers = await asyncio.gather(
            *(http.post(f"{tiny_queue}/v1/keys/validate", json={"apiKey": key, "units": 1}) for _ in range(64))
        )
    statuses = sorted({r.status_code for r in answers})
    assert statuses == [200, 503], statuses
    busy = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "overloaded" for r in busy)
    used = (await demo_validate(stack, key))["quota"]["used"]
    assert used == sum(r.status_code == 200 for r in answers)  # a refused call consumed nothing


async def demo_validate(stack: dict[str, Any], key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=15) as http:
        r = await http.post(f"{stack['keys']}/v1/keys/validate", json={"apiKey": key, "consume": False})
    return r.json()  # type: ignore[no-any-return]


async def test_every_admin_call_is_recorded_with_who_what_and_from_where(stack: dict[str, Any]) -> None:
    probe = f"/v1/admin/accounts/cus_audit{secrets.token_hex(4)}/keys"
    async with httpx.AsyncClient(base_url=stack["keys_admin"], timeout=15) as http:
        by_operator = await http.get(probe, headers={"Authorization": f"Bearer {stack['operator_token']}"})
        by_stranger = await http.get(probe, headers={"Authorization": "Bearer guess"})
    assert (by_operator.status_code, by_stranger.status_code) == (200, 401)

    async def recorded() -> list[Any] | None:
        found = await rows(
            stack, "keys", "SELECT caller, audience, method, status, client FROM audit_log WHERE path = $1", probe
        )
        return found if len(found) == 2 else None

    found = await eventually("the audit rows", recorded)
    assert sorted(tuple(r) for r in found) == [
        ("anonymous", "none", "GET", 401, "127.0.0.1"),
        ("ops", "operator", "GET", 200, "127.0.0.1"),
    ]


async def test_an_admin_change_is_recorded_before_it_acts_and_a_lookup_after(stack: dict[str, Any]) -> None:
    account = f"cus_audit{secrets.token_hex(4)}"
    change = f"/v1/admin/accounts/{account}/keys"
    async with httpx.AsyncClient(base_url=stack["keys_admin"], timeout=15) as http:
        made = await http.post(change, headers={"Authorization": f"Bearer {stack['operator_token']}"})
        looked = await http.post(
            "/internal/v1/identify",
            json={"apiKey": f"tg_{account}"},
            headers={"Authorization": f"Bearer {stack['portal_token']}"},
        )
    assert (made.status_code, looked.status_code) == (409, 200)  # nothing bought: refused by the handler

    async def recorded() -> list[Any] | None:
        found = await rows(stack, "keys", "SELECT request, status FROM audit_log WHERE path = $1 ORDER BY id", change)
        return found if len(found) == 2 else None

    intent, outcome = await eventually("the audit rows", recorded)
    assert (intent["status"], outcome["status"]) == (None, 409)  # the intent, committed before the handler ran
    assert intent["request"] == outcome["request"]
    lookups = await rows(stack, "keys", "SELECT status FROM audit_log WHERE path = '/internal/v1/identify'")
    assert lookups and None not in [r["status"] for r in lookups]  # a lookup: its outcome only
