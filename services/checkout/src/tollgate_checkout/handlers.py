"""Checkout's use cases: start a purchase, and accept Stripe's word that it was paid."""

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import stripe

from tollgate_shared import outbox
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.http import ApiError
from tollgate_shared.logging import get_logger

from . import repo
from .domain import Catalog, UnknownPlan, Unprocessable, payment_fact
from .stripe_gateway import CreatedSession, StripeCheckout

log = get_logger(__name__)


@dataclass(frozen=True)
class StartCheckout:
    plan: str
    email: str
    name: str | None = None
    quantity: int = 1
    idempotency_key: str | None = None
    account_id: str | None = None


async def start_checkout(cmd: StartCheckout, catalog: Catalog, gateway: StripeCheckout) -> CreatedSession:
    try:
        plan = catalog.get(cmd.plan)
    except UnknownPlan:
        raise ApiError(422, "unknown_plan", f"unknown plan {cmd.plan!r}; known: {', '.join(catalog.names())}") from None
    if plan.mode == "subscription" and cmd.quantity != 1:
        raise ApiError(422, "invalid_quantity", "a subscription plan is bought one at a time")
    try:
        return await gateway.create_session(
            plan, cmd.email, cmd.name, cmd.quantity, cmd.idempotency_key, cmd.account_id
        )
    except stripe.InvalidRequestError as exc:
        if cmd.account_id and exc.http_status == 404:
            raise ApiError(422, "unknown_account", f"no customer {cmd.account_id!r} at Stripe") from None
        raise ApiError(502, "payment_provider_error", "Stripe could not create the checkout session") from None
    except stripe.StripeError as exc:
        log.error("stripe refused the checkout session", stripe_error=str(exc.user_message or exc)[:300])
        raise ApiError(502, "payment_provider_error", "Stripe could not create the checkout session") from None


@dataclass(frozen=True)
class WebhookSecret:
    secret: str
    tolerance_s: int


def verify_webhook(payload: bytes, signature: str | None, secret: WebhookSecret) -> dict[str, Any]:
    """Verify Stripe's signature with the SDK, then parse. Raises ApiError(400) on any doubt."""
    if not signature:
        raise ApiError(400, "missing_signature", "Stripe-Signature header is required")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8", "replace"), signature, secret.secret, secret.tolerance_s
        )
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc).lower():
            raise ApiError(400, "timestamp_outside_tolerance", "signature timestamp is too old or too new") from None
        raise ApiError(400, "invalid_signature", "signature does not match the payload") from None
    try:
        event = json.loads(payload)
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or "type" not in event:
            raise ValueError("not a Stripe event")
    except ValueError:
        raise ApiError(400, "malformed_payload", "payload is not a Stripe event JSON object") from None
    return event


async def ingest_webhook(event: dict[str, Any], pool: asyncpg.Pool, catalog: Catalog) -> str:
    """Record the event once and publish the payment fact it carries, in one transaction."""
    try:
        fact = payment_fact(event, catalog)
        outcome = "published" if fact else "ignored"
    except Unprocessable as exc:
        fact, outcome = None, "unprocessable"
        log.error("stripe event cannot be processed", reason=str(exc), stripe_event_id=event["id"])
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.record_event(conn, event, outcome):
            return "duplicate"
        if fact is not None:
            # Keyed by customer, so one customer's facts stay in order on one partition.
            key = str(getattr(fact, "account_id", None) or getattr(fact, "payment_intent_id", ""))
            await outbox.add(conn, PAYMENTS_EVENTS, key, fact)
    log.info("stripe event accepted", stripe_event_id=event["id"], stripe_event_type=event["type"], outcome=outcome)
    return outcome
