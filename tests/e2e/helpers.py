"""Shared steps for end-to-end tests: real HTTP against the running stack."""

import json
import secrets
import time
from typing import Any

import asyncpg
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


async def rows(stack: dict[str, Any], schema: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Read a service's own tables, to see what a request changed (tests never write them)."""
    conn = await asyncpg.connect(stack["database_url"], server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stored_for(stack: dict[str, Any], event_id: str, session_id: str) -> tuple[int, int]:
    """What checkout kept of a webhook: (Stripe events stored under its id, outbox rows for its session)."""
    stored = await rows(stack, "checkout", "SELECT 1 FROM stripe_events WHERE id = $1", event_id)
    queued = await rows(
        stack, "checkout", "SELECT 1 FROM outbox WHERE payload->>'checkout_session_id' = $1", session_id
    )
    return len(stored), len(queued)
