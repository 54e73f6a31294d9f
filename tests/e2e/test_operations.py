"""What a platform team relies on: health, readiness, metrics, and logs without secrets."""

import json
import re
import secrets
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tollgate_devstack.config import SERVICES
from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_keys.keyformat import generate

from .helpers import completed_event, new_session, post_webhook, signed

KEY = re.compile(r"tg_(?:test|live)_[0-9A-Za-z]{28}")


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_is_healthy_and_ready(stack: dict[str, Any], service: str) -> None:
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{stack[service]}/healthz")
        ready = await http.get(f"{stack[service]}/readyz")
        admin_ready = await http.get(f"{stack[service + '_admin']}/readyz")
        metrics = await http.get(f"{stack[service + '_admin']}/metrics")
        public_metrics = await http.get(f"{stack[service]}/metrics")
    assert health.status_code == 200
    assert ready.status_code == admin_ready.status_code == 200
    # Ready is what the pod serves: PostgreSQL. Kafka is reported, and waited for by the outbox.
    assert ready.json()["checks"] == {"postgres": True}
    assert ready.json()["reported"] == {"kafka": True}
    assert metrics.status_code == 200
    assert public_metrics.status_code == 404  # only the admin listener, which no Service exposes
    assert "python_info" in metrics.text
    assert "tollgate_outbox_oldest_waiting_seconds" in metrics.text


async def scrape(http: httpx.AsyncClient, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on a /metrics page, by name and labels."""
    text = (await http.get(f"{url}/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_keys_metrics_count_every_validation_by_outcome_and_time_its_batch(stack: dict[str, Any]) -> None:
    session = await new_session(stack)
    async with Demo(stack) as demo:
        await demo.pay(session["id"])
        key, _ = await demo.key_from_email(session["email"])

    def validations(outcome: str, consume: str = "true") -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("tollgate_keys_validations_total", (("consume", consume), ("outcome", outcome)))

    def rejected(status: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("tollgate_keys_validate_rejected_total", (("status", status),))

    published = ("tollgate_outbox_published_total", (("topic", "usage.recorded"),))
    batches, answers = ("tollgate_keys_batch_seconds_count", ()), ("tollgate_keys_validate_seconds_count", ())
    watched = [
        validations("ok"),
        validations("ok", "false"),
        validations("not_found"),
        validations("malformed"),
        rejected("413"),
        rejected("422"),
        batches,
        answers,
        published,
    ]
    async with httpx.AsyncClient(base_url=stack["keys"], timeout=15) as http:
        before = await scrape(http, stack["keys_admin"])
        for body in [
            {"apiKey": key, "units": 1, "consume": True},
            {"apiKey": key, "units": 1, "consume": True},
            {"apiKey": key, "units": 1, "consume": False},
            {"apiKey": generate("test"), "units": 1, "consume": True},
            {"apiKey": "tg_test_not-a-key", "units": 1, "consume": True},
            {"apiKey": key, "units": -1},
            {"apiKey": key, "units": 1, "padding": "x" * 20_000},
        ]:
            await http.post("/v1/keys/validate", content=json.dumps(body).encode())
        # The relay publishes the two usage events within its next pass or two.
        after = await eventually(
            "two usage events published",
            lambda: scrape(http, stack["keys_admin"]),
            15,
            until=lambda now: now.get(published, 0) - before.get(published, 0) >= 2,
            every=0.1,
        )
    moved = {name: after.get(name, 0) - before.get(name, 0) for name in watched}
    assert moved == {
        validations("ok"): 2,
        validations("ok", "false"): 1,
        validations("not_found"): 1,
        validations("malformed"): 1,
        rejected("413"): 1,
        rejected("422"): 1,
        # Each consuming validation of a well-formed key rides a batch (one at a time here,
        # so a batch each); a check and a typo do not.
        batches: 3,
        answers: 5,
        published: 2,
    }


async def test_no_key_or_secret_appears_in_any_process_log(stack: dict[str, Any]) -> None:
    """Keys are issued, used, refused and rotated here, then every log of the stack is
    read: the services', the emulators', PostgreSQL's and Kafka's."""
    launcher = stack["launcher"]
    async with Demo(stack) as demo:
        email = f"logs+{secrets.token_hex(4)}@example.com"
        session = await demo.buy("starter", email)
        await demo.pay(session["id"])
        first, _ = await demo.key_from_email(email)
        await demo.validate(first, 1)
        await demo.validate(first[:-1] + ("A" if first[-1] != "A" else "B"), 1)  # a typo, refused
        (issued,) = await demo.keys_of(session["customer"])
        r = await demo.http.post(
            f"{stack['keys_admin']}/v1/admin/keys/{issued['id']}/rotate",
            headers={"Authorization": f"Bearer {stack['operator_token']}"},
            json={"graceSeconds": 60},
        )
        assert r.status_code == 200
        successor = await eventually(
            "the rotated key's email",
            lambda: demo.key_from_email(email),
            until=lambda found: found[0] != first,
        )
        await demo.validate(successor[0], 1)
    secrets_in_play = {
        "an API key": first,
        "the rotated API key": successor[0],
        "the Stripe API key": STRIPE_API_KEY,
        **dict(flattened(launcher.secrets)),
    }
    logs = sorted(launcher.procs.log_dir.glob("*.log"))
    assert {f"{name}.log" for name in (*SERVICES, "postgres", "kafka", "stripe-emulator")} <= {p.name for p in logs}
    for log in logs:
        text = log.read_text(errors="replace")
        found = [what for what, value in secrets_in_play.items() if value in text]
        assert not found, f"{log.name} logged {', '.join(found)}"
        assert not KEY.search(text), f"{log.name} logged something shaped like an API key"


def flattened(secrets: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Every secret of the stack, by a name saying which: tokens, keys, passwords."""
    out: list[tuple[str, str]] = []
    for name, value in secrets.items():
        if isinstance(value, dict):
            out += flattened(value, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", value))
    return out


async def test_checkout_metrics_count_webhooks_by_type_and_outcome(stack: dict[str, Any]) -> None:
    def webhooks(event_type: str, outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("tollgate_checkout_webhooks_total", (("outcome", outcome), ("type", event_type)))

    watched = [
        webhooks("checkout.session.completed", "published"),
        webhooks("checkout.session.completed", "duplicate"),
        webhooks("unverified", "invalid_signature"),
        webhooks("unverified", "missing_signature"),
    ]
    body, signature = signed(stack, completed_event(await new_session(stack)))
    async with httpx.AsyncClient(timeout=15) as http:
        before = await scrape(http, stack["checkout_admin"])
        assert (await post_webhook(stack, body, signature)).status_code == 200
        assert (await post_webhook(stack, body, signature)).status_code == 200  # Stripe retrying
        assert (await post_webhook(stack, body + b" ", signature)).status_code == 400
        assert (await post_webhook(stack, body, None)).status_code == 400
        after = await scrape(http, stack["checkout_admin"])
    assert {name: after.get(name, 0) - before.get(name, 0) for name in watched} == dict.fromkeys(watched, 1)


async def test_an_operator_sees_how_many_live_keys_each_hash_secret_holds(stack: dict[str, Any], demo: Demo) -> None:
    # The stack never rotated its hash secret: every key a purchase issues is under the current one.
    email = f"secrets+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    await demo.pay(session["id"])
    await demo.key_from_email(email)
    async with httpx.AsyncClient(base_url=stack["keys_admin"], timeout=15) as http:
        answer = await http.get(
            "/v1/admin/hash-secrets", headers={"Authorization": f"Bearer {stack['operator_token']}"}
        )
    assert answer.status_code == 200, answer.text
    by_role = {s["role"]: s for s in answer.json()["secrets"]}
    assert by_role["current"]["live_keys"] >= 1 and len(by_role["current"]["secret_id"]) == 16
    # Keys some tests write straight into the table carry no fingerprint: "unrecorded".
    assert set(by_role) <= {"current", "unrecorded"}
