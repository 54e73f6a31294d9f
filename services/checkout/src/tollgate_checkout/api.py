"""Checkout's HTTP edge: create sessions, receive Stripe webhooks."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime

from . import metrics
from .config import Settings
from .domain import Catalog, Malformed
from .handlers import StartCheckout, StripeSide, WebhookSecrets, ingest_webhook, start_checkout, verify_webhook
from .stripe_gateway import StripeCheckout


@dataclass(frozen=True)
class Deps:
    settings: Settings
    runtime: Runtime
    catalog: Catalog
    gateway: StripeCheckout

    @property
    def stripe_side(self) -> StripeSide:
        return StripeSide(self.catalog, self.gateway)


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit`: from its
    Content-Length before reading, or while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"a webhook body is at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"a webhook body is at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


log = get_logger(__name__)
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=64)
    email: str = Field(pattern=EMAIL, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1000, strict=True)
    account_id: str | None = Field(
        default=None, pattern=r"^cus_[0-9A-Za-z]+$", description="an existing customer buying again (a top-up)"
    )


def router(deps: Deps) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/checkout/sessions", status_code=201)
    async def create_session(
        body: CheckoutRequest, idempotency_key: Annotated[str | None, Header()] = None
    ) -> dict[str, str]:
        cmd = StartCheckout(body.plan, body.email, body.name, body.quantity, idempotency_key, body.account_id)
        session = await start_checkout(cmd, deps.catalog, deps.gateway)
        return {"id": session.id, "url": session.url, "customer": session.customer, "mode": session.mode}

    @r.post("/stripe/webhook")
    async def stripe_webhook(
        request: Request, stripe_signature: Annotated[str | None, Header()] = None
    ) -> dict[str, object]:
        secrets = WebhookSecrets(deps.settings.webhook_secrets(), deps.settings.webhook_tolerance_s)
        try:
            body = await read_capped(request, deps.settings.webhook_max_bytes)
            event = verify_webhook(body, stripe_signature, secrets)
        except ApiError as refused:
            metrics.WEBHOOKS.labels("unverified", refused.code).inc()
            raise
        try:
            outcome = await ingest_webhook(event, deps.runtime.pool, deps.stripe_side)
        except Malformed as exc:
            metrics.WEBHOOKS.labels(event["type"], "malformed").inc()
            log.warning("stripe event malformed", stripe_event_id=event["id"], reason=str(exc)[:300])
            raise ApiError(400, "malformed_event", f"{event['type']} event is malformed: {exc}") from None
        metrics.WEBHOOKS.labels(event["type"], outcome).inc()
        return {"received": True, "outcome": outcome}

    return r
