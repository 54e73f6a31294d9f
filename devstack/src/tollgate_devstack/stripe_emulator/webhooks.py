"""Stripe-style webhook signing and delivery."""

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import stripe

from .state import State, new_id


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">`, exactly as Stripe signs."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(event_type: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


async def deliver(state: State, url: str, secret: str, evt: dict[str, Any], attempts: int = 5) -> dict[str, Any]:
    """POST the signed event; retry on failure as Stripe does (here: quickly, a few times)."""
    payload = json.dumps(evt).encode()
    record: dict[str, Any] = {"event_id": evt["id"], "type": evt["type"], "url": url, "attempts": []}
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(attempts):
            try:
                r = await client.post(
                    url,
                    content=payload,
                    headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(payload, secret),
                        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    },
                )
                record["attempts"].append(r.status_code)
                if r.status_code < 300:
                    break
            except httpx.HTTPError as exc:
                record["attempts"].append(repr(exc))
            await asyncio.sleep(0.5)
    record["delivered"] = any(isinstance(a, int) and a < 300 for a in record["attempts"])
    state.webhook_deliveries.append(record)
    return record
