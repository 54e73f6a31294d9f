"""Bad input gets a clear JSON error with the right status, and changes nothing."""

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tollgate_devstack.demo import Demo, eventually
from tollgate_keys.api import MAX_UNITS
from tollgate_shared.kafka_reader import read_topic

from .helpers import completed_event, new_session, post_webhook, rows, signed, stored_for

# Not a positive integer within MAX_UNITS; JSON's true is no number of units either.
BAD_UNITS: list[Any] = [0, -5, 1.5, "3", None, True, 10**12, 10**30]


async def published_for(stack: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    return [
        m for m in await read_topic(stack["kafka"], "payments.events") if m.get("checkout_session_id") == session_id
    ]


async def keys_of(stack: dict[str, Any], account: str) -> list[dict[str, Any]]:
    async with Demo(stack) as demo:
        return await demo.keys_of(account)


class TestWebhookRefusals:
    @pytest.mark.parametrize("how", ["wrong_secret", "missing", "tampered"])
    async def test_a_bad_or_missing_signature_is_400_and_publishes_nothing(
        self, stack: dict[str, Any], how: str
    ) -> None:
        session = await new_session(stack)
        event = completed_event(session)
        body, signature = signed(stack, event)
        if how == "wrong_secret":
            signature = signed(stack | {"webhook_secret": "whsec_wrong"}, event)[1]
        elif how == "tampered":
            body = body.replace(b'"starter"', b'"enterprise"')
        r = await post_webhook(stack, body, None if how == "missing" else signature)
        assert r.status_code == 400
        assert r.json()["error"]["code"] in ("invalid_signature", "missing_signature")
        # Nothing stored and nothing queued: the outbox is the only way to Kafka.
        assert await stored_for(stack, event["id"], session["id"]) == (0, 0)

    async def test_a_timestamp_outside_the_tolerance_is_400(self, stack: dict[str, Any]) -> None:
        session = await new_session(stack)
        event = completed_event(session)
        body, signature = signed(stack, event, at=int(time.time()) - 3600)
        r = await post_webhook(stack, body, signature)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "timestamp_outside_tolerance")
        assert await stored_for(stack, event["id"], session["id"]) == (0, 0)

    async def test_malformed_json_is_400(self, stack: dict[str, Any]) -> None:
        body = b'{"id": "evt_1", "type": '
        r = await post_webhook(stack, body, signed(stack, {})[1].split(",")[0] + ",v1=" + "0" * 64)
        assert r.status_code == 400
        from tollgate_devstack.stripe_emulator.webhooks import sign

        r = await post_webhook(stack, body, sign(body, stack["webhook_secret"]))
        assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_payload")

    async def test_the_same_webhook_twice_is_processed_once(self, stack: dict[str, Any]) -> None:
        session = await new_session(stack)
        body, signature = signed(stack, completed_event(session))
        first = await post_webhook(stack, body, signature)
        second = await post_webhook(stack, body, signature)
        assert (first.json()["outcome"], second.json()["outcome"]) == ("published", "duplicate")
        # A second Stripe event for the same session (as async payment methods send) is one payment too.
        body, signature = signed(stack, completed_event(session))
        assert (await post_webhook(stack, body, signature)).status_code == 200
        async with Demo(stack) as demo:
            # A second pack of the same customer, on the same partition after the copies:
            # once its credits show, a doubled credit or key would have shown too.
            key, _ = await demo.key_from_email(session["email"])
            again = await demo.buy("starter", session["email"], account_id=session["customer"], key=key)
            await demo.pay(again["id"])
            await demo.balance_equal(session["customer"], 2_000)
            keys = await eventually(
                "the second pack to top up the key",
                lambda: demo.keys_of(session["customer"]),
                until=lambda ks: sum(k["quota"]["limit"] for k in ks) >= 2_000,
            )
            assert [k["quota"]["limit"] for k in keys] == [2_000]
        assert len(await published_for(stack, session["id"])) == 1


class TestCheckoutRefusals:
    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"plan": "platinum", "email": "a@example.com"}, 422, "unknown_plan"),
            ({"plan": "starter", "email": "not-an-email"}, 422, "invalid_request"),
            ({"plan": "starter"}, 422, "invalid_request"),
            ({"plan": "starter", "email": "a@example.com", "quantity": 0}, 422, "invalid_request"),
        ],
    )
    async def test_bad_requests_get_a_clear_error(
        self, stack: dict[str, Any], body: dict[str, Any], status: int, code: str
    ) -> None:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{stack['checkout']}/v1/checkout/sessions", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)

    async def test_malformed_json_is_400(self, stack: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{stack['checkout']}/v1/checkout/sessions",
                content=b"{plan",
                headers={"Content-Type": "application/json"},
            )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_json")


@dataclass(frozen=True)
class LiveKey:
    key: str
    key_id: str

    async def consumed(self, stack: dict[str, Any]) -> tuple[int, int]:
        """(the key's used quota, units in its usage events): events still in keys' outbox
        and those already published (the outbox forgets usage events once Kafka has them)."""
        (row,) = await rows(stack, "keys", "SELECT quota_used FROM keys WHERE id = $1::uuid", self.key_id)
        queued = await rows(
            stack,
            "keys",
            "SELECT payload->>'event_id' AS event_id, (payload->>'units')::bigint AS units FROM outbox "
            "WHERE payload->>'key_id' = $1 AND payload->>'event_type' = 'UsageRecorded'",
            self.key_id,
        )
        published = [e for e in await read_topic(stack["kafka"], "usage.recorded") if e["key_id"] == self.key_id]
        units = {e["event_id"]: int(e["units"]) for e in published} | {r["event_id"]: r["units"] for r in queued}
        return row["quota_used"], sum(units.values())


@pytest.fixture(scope="class")
def live_key(stack: dict[str, Any]) -> LiveKey:
    """A paid pack's key that has consumed 3 units: what each refusal must leave as it is."""

    async def buy() -> LiveKey:
        session = await new_session(stack)
        async with Demo(stack) as demo:
            await demo.pay(session["id"])
            key, _ = await demo.key_from_email(session["email"])
            answer = await demo.validate(key, 3)
            assert answer["quota"]["used"] == 3
            return LiveKey(key, answer["keyId"])

    return asyncio.run(buy())


def refusal(what: str, key: str) -> bytes | AsyncIterator[bytes]:
    """The body of one kind of bad request, naming `key`."""
    if what.startswith("units="):
        return json.dumps({"apiKey": key, "units": BAD_UNITS[[f"units={u!r}" for u in BAD_UNITS].index(what)]}).encode()
    if what == "a streamed body over the cap":

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap must count what arrives
            for _ in range(20):
                yield b" " * 1000
            yield json.dumps({"apiKey": key, "units": 1}).encode()

        return chunks()
    bodies: dict[str, Any] = {
        "consume as a string": {"apiKey": key, "units": 1, "consume": "yes"},
        "an unknown field": {"apiKey": key, "units": 1, "unit": 5},
        "the key as a number": {"apiKey": 12345, "units": 1},
        "a key of 300 characters": {"apiKey": key + "x" * 272, "units": 1},
        "a JSON array": [key, 1],
        "a body over the cap": {"apiKey": key, "units": 1, "consume": True, "route": "/" + "x" * 9000},
    }
    if what == "not JSON":
        return f'{{"apiKey": "{key}", "units": 1'.encode()
    return json.dumps(bodies[what]).encode()


class TestValidateRefusals:
    async def validate(self, stack: dict[str, Any], body: Any) -> httpx.Response:
        return await self.post(stack, json.dumps(body).encode())

    async def post(self, stack: dict[str, Any], content: str | bytes | AsyncIterator[bytes]) -> httpx.Response:
        """A body as it is, JSON or not, at once or streamed."""
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{stack['keys']}/v1/keys/validate", content=content, headers={"Content-Type": "application/json"}
            )

    async def test_an_unknown_key_is_not_valid_and_not_an_error(self, stack: dict[str, Any]) -> None:
        from tollgate_keys.keyformat import generate

        r = await self.validate(stack, {"apiKey": generate("test"), "units": 1, "consume": True})
        assert r.status_code == 200
        assert r.json() == {"isValid": False, "unitsConsumed": 0, "reason": "not_found"}

    async def test_a_revoked_key_is_not_valid(self, stack: dict[str, Any]) -> None:
        session = await new_session(stack)
        async with Demo(stack) as demo:
            await demo.pay(session["id"])
            key, _ = await demo.key_from_email(session["email"])
            assert (await demo.validate(key, 1))["isValid"]
            (issued,) = await demo.keys_of(session["customer"])
            r = await demo.http.post(
                f"{stack['keys_admin']}/v1/admin/keys/{issued['id']}/revoke",
                headers={"Authorization": f"Bearer {stack['operator_token']}"},
            )
            assert r.status_code == 200
            assert r.json()["status"] == "revoked"
            refused = await demo.validate(key, 1)
            assert (refused["isValid"], refused["reason"], refused["quota"]["used"]) == (False, "revoked", 1)

    @pytest.mark.parametrize("units", BAD_UNITS)
    async def test_units_that_are_not_a_positive_integer_are_422(self, stack: dict[str, Any], units: Any) -> None:
        r = await self.validate(stack, {"apiKey": "tg_test_x", "units": units, "consume": True})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")

    async def test_an_oversized_body_is_413_and_consumes_nothing(self, stack: dict[str, Any]) -> None:
        r = await self.validate(stack, {"apiKey": "tg_test_x", "units": 1, "padding": "x" * 20_000})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    async def test_unknown_fields_are_refused(self, stack: dict[str, Any]) -> None:
        r = await self.validate(stack, {"apiKey": "tg_test_x", "units": 1, "unit": 5})
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "unit"

    async def test_missing_api_key_is_422(self, stack: dict[str, Any]) -> None:
        assert (await self.validate(stack, {"units": 1})).status_code == 422

    @pytest.mark.parametrize(
        ("what", "status", "code"),
        [
            *[(f"units={u!r}", 422, "invalid_request") for u in BAD_UNITS],
            ("consume as a string", 422, "invalid_request"),
            ("an unknown field", 422, "invalid_request"),
            ("the key as a number", 422, "invalid_request"),
            ("a key of 300 characters", 422, "invalid_request"),
            ("a JSON array", 422, "invalid_request"),
            ("not JSON", 400, "malformed_json"),
            ("a body over the cap", 413, "payload_too_large"),
            ("a streamed body over the cap", 413, "payload_too_large"),
        ],
    )
    async def test_no_refused_request_consumes_from_the_real_key_it_names(
        self, stack: dict[str, Any], live_key: LiveKey, what: str, status: int, code: str
    ) -> None:
        """The refusals above name keys that do not exist, so "nothing consumed" holds
        there by default; here every kind of bad request carries a live key with a quota."""
        r = await self.post(stack, refusal(what, live_key.key))
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)
        assert await live_key.consumed(stack) == (3, 3)

    @pytest.mark.parametrize(
        ("what", "reason"), [("a checksum typo", "malformed"), ("more units than the quota", "quota_exceeded")]
    )
    async def test_a_refused_validation_of_a_real_key_consumes_nothing(
        self, stack: dict[str, Any], live_key: LiveKey, what: str, reason: str
    ) -> None:
        key = live_key.key
        api_key, units = (
            (key[:12] + ("A" if key[12] != "A" else "B") + key[13:], 1) if "typo" in what else (key, MAX_UNITS)
        )
        async with Demo(stack) as demo:
            answer = await demo.validate(api_key, units)
        assert (answer["isValid"], answer["unitsConsumed"], answer["reason"]) == (False, 0, reason)
        assert await live_key.consumed(stack) == (3, 3)

    async def test_admin_routes_need_the_token(self, stack: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{stack['keys_admin']}/v1/admin/accounts/cus_x/keys",
                headers={"Authorization": f"Bearer {secrets.token_hex(8)}"},
            )
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
