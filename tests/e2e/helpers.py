"""Shared steps for end-to-end tests: real HTTP against the running stack."""

import json
import secrets
import time
from typing import Any

import httpx

from tollgate_devstack.stripe_emulator.webhooks import sign


def completed_event(session: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """A checkout.session.completed for a session the emulator created, as Stripe would send it."""
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": session["id"],
                "object": "checkout.session",
                "mode": session["mode"],
                "payment_status": "paid",
                "status": "complete",
                "customer": session["customer"],
                "customer_details": {"email": session["email"], "name": "E2E"},
                "metadata": {"plan": session["plan"]},
                "amount_total": 999,
                "currency": "usd",
                "payment_intent": f"pi_{secrets.token_hex(8)}",
            }
        },
    }


async def post_webhook(stack: dict[str, Any], body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": signature} if signature else {})
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{stack['checkout']}/stripe/webhook", content=body, headers=headers)


def signed(stack: dict[str, Any], event: dict[str, Any], at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    return body, sign(body, stack["webhook_secret"], at)


async def new_session(stack: dict[str, Any], plan: str = "starter") -> dict[str, Any]:
    email = f"e2e+{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{stack['checkout']}/v1/checkout/sessions", json={"plan": plan, "email": email})
    assert r.status_code == 201, r.text
    return r.json() | {"email": email, "plan": plan}  # type: ignore[no-any-return]
