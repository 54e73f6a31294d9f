"""Checkout's HTTP edge: start a purchase (anyone, limited; buying again for an account
needs that customer's key), and receive Stripe's webhooks."""

import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from tollgate_shared.auth import Caller, Identify, bearer, key_holder
from tollgate_shared.http import ApiError, ErrorBody, RequestBody, Text, client_address
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime

from . import metrics
from .config import Settings
from .domain import Catalog, Malformed
from .handlers import StartCheckout, StripeSide, WebhookSecrets, ingest_webhook, start_checkout, verify_webhook
from .limits import Limits, admit_anonymous
from .stripe_gateway import StripeCheckout
from .top_ups import TopUp, request_top_up


@dataclass(frozen=True)
class Deps:
    settings: Settings
    runtime: Runtime
    catalog: Catalog
    gateway: StripeCheckout
    identify: Identify  # whose an API key is (the keys service)
    limits: Limits

    @property
    def stripe_side(self) -> StripeSide:
        return StripeSide(self.catalog, self.gateway, self.settings.top_up_rules())


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


class CheckoutRequest(RequestBody):
    plan: Text = Field(min_length=1, max_length=64)
    email: str = Field(pattern=EMAIL, max_length=254)
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1000, strict=True)
    account_id: str | None = Field(
        default=None,
        pattern=r"^cus_[0-9A-Za-z]+$",
        max_length=64,
        description="An existing customer buying again (a top-up): send one of their API keys as a bearer token",
    )


class SessionCreated(BaseModel):
    id: str
    url: str = Field(description="Where to send the customer to pay")
    customer: str = Field(description="The customer's account id (their Stripe customer)")
    mode: Literal["payment", "subscription"]


class TopUpRequest(RequestBody):
    amount: int = Field(gt=0, le=10**9, description="In minor units (cents); credits follow at the configured rate")


class TopUpView(BaseModel):
    id: str
    state: Literal["requested", "succeeded", "failed"] = Field(
        description="requested: the credits are pending until Stripe answers; succeeded: posted; failed: voided"
    )
    credits: int
    amount: int
    currency: str
    source: str
    failure: str | None = None


def top_up_view(t: TopUp) -> TopUpView:
    return TopUpView(
        id=t.id,
        state=t.state,  # type: ignore[arg-type]
        credits=t.credits,
        amount=t.amount_minor,
        currency=t.currency,
        source=t.source,
        failure=t.failure,
    )


class WebhookReceived(BaseModel):
    received: bool
    outcome: str


def router(deps: Deps) -> APIRouter:
    r = APIRouter()
    holder = key_holder(deps.identify)

    @r.post("/v1/checkout/sessions", status_code=201, tags=["public"])
    async def create_session(
        body: CheckoutRequest,
        request: Request,
        idempotency_key: Annotated[Text | None, Header(max_length=255)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> SessionCreated:
        """Start a purchase. Anyone may buy a first key (a limited number an hour per
        address and per email); buying again for an `account_id` takes one of that
        account's API keys, so nobody learns or spends on another's account."""
        if body.account_id is None:
            address = client_address(request, deps.settings.trusted_proxies)
            await admit_anonymous(deps.runtime.pool, deps.limits, address, body.email)
        else:
            await _require_owner(deps.identify, bearer(authorization), body.account_id)
        cmd = StartCheckout(body.plan, body.email, body.name, body.quantity, idempotency_key, body.account_id)
        session = await start_checkout(cmd, deps.catalog, deps.gateway)
        return SessionCreated(id=session.id, url=session.url, customer=session.customer, mode=session.mode)  # type: ignore[arg-type]

    @r.post(
        "/v1/top-ups",
        status_code=201,
        tags=["customer"],
        responses={402: {"model": ErrorBody, "description": "The card on file was declined; nothing is credited"}},
    )
    async def top_up(
        body: TopUpRequest,
        caller: Annotated[Caller, Depends(holder)],
        idempotency_key: Annotated[Text | None, Header(max_length=255)] = None,
    ) -> TopUpView:
        """Buy credits with the card on file (saved by an earlier Checkout), authenticated
        by one of the account's API keys. The credits are pending at once (`available`
        moves) and posted when the charge succeeds; the same Idempotency-Key charges once."""
        assert caller.account_id is not None
        made = await request_top_up(
            deps.runtime.pool,
            deps.gateway,
            deps.settings.top_up_rules(),
            caller.account_id,
            body.amount,
            "api",
            idempotency_key or secrets.token_hex(16),
        )
        if made.state == "failed":
            raise ApiError(402, "card_declined", f"the card on file was declined ({made.failure}); top-up {made.id}")
        return top_up_view(made)

    @r.post("/stripe/webhook", tags=["public"])
    async def stripe_webhook(
        request: Request, stripe_signature: Annotated[str | None, Header()] = None
    ) -> WebhookReceived:
        """Stripe's events, signed with the endpoint's secret; each applied once."""
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
        return WebhookReceived(received=True, outcome=outcome)

    return r


async def _require_owner(identify: Identify, api_key: str, account_id: str) -> None:
    owner = await identify(api_key) if api_key else None
    if owner is None:
        raise ApiError(
            401, "unauthorized", "buying for an existing account takes one of its API keys as a bearer token"
        )
    if owner != account_id:
        raise ApiError(403, "forbidden", "a key buys only for its own account")
