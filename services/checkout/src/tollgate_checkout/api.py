"""Checkout's HTTP edge: create sessions, receive Stripe webhooks."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError
from tollgate_shared.runtime import Runtime

from . import metrics
from .config import Settings
from .domain import Catalog
from .handlers import StartCheckout, WebhookSecret, ingest_webhook, start_checkout, verify_webhook
from .stripe_gateway import StripeCheckout


@dataclass(frozen=True)
class Deps:
    settings: Settings
    runtime: Runtime
    catalog: Catalog
    gateway: StripeCheckout


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
        secret = WebhookSecret(
            deps.settings.stripe_webhook_secret.get_secret_value(), deps.settings.webhook_tolerance_s
        )
        try:
            event = verify_webhook(await request.body(), stripe_signature, secret)
        except ApiError as refused:
            metrics.WEBHOOKS.labels("unverified", refused.code).inc()
            raise
        outcome = await ingest_webhook(event, deps.runtime.pool, deps.catalog)
        metrics.WEBHOOKS.labels(event["type"], outcome).inc()
        return {"received": True, "outcome": outcome}

    return r
