"""Checkout's use cases: start a purchase, and accept Stripe's word that it was paid."""

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import stripe

from tollgate_shared import outbox
from tollgate_shared.contracts import Event, payments_event
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.http import ApiError
from tollgate_shared.logging import get_logger

from . import repo, top_ups
from .domain import Catalog, Malformed, UnknownPlan, Unprocessable
from .machines import PAYMENT_INTENT_EVENTS, Observation, decide, facts, observe, observe_object
from .stripe_gateway import CreatedSession, PlanNotAtStripe, StripeCheckout
from .top_ups import DEFAULT_TOP_UPS, TopUpRules

log = get_logger(__name__)


@dataclass(frozen=True)
class StartCheckout:
    plan: str
    email: str
    name: str | None = None
    quantity: int = 1
    idempotency_key: str | None = None
    account_id: str | None = None


async def start_checkout(
    cmd: StartCheckout, catalog: Catalog, gateway: StripeCheckout, return_url: str | None = None
) -> CreatedSession:
    try:
        plan = catalog.get(cmd.plan)
    except UnknownPlan:
        raise ApiError(422, "unknown_plan", f"unknown plan {cmd.plan!r}; known: {', '.join(catalog.names())}") from None
    if plan.mode == "subscription" and cmd.quantity != 1:
        raise ApiError(422, "invalid_quantity", "a subscription plan is bought one at a time")
    try:
        return await gateway.create_session(
            plan, cmd.email, cmd.name, cmd.quantity, cmd.idempotency_key, cmd.account_id, return_url
        )
    except PlanNotAtStripe:
        log.error("the plan has no Price at Stripe: run python -m tollgate_checkout.stripe_sync", plan=cmd.plan)
        raise ApiError(503, "plan_not_available", f"plan {cmd.plan!r} is not set up at Stripe yet") from None
    except stripe.InvalidRequestError as exc:
        if cmd.account_id and exc.http_status == 404:
            raise ApiError(422, "unknown_account", f"no customer {cmd.account_id!r} at Stripe") from None
        raise ApiError(502, "payment_provider_error", "Stripe could not create the checkout session") from None
    except stripe.StripeError as exc:
        log.error("stripe refused the checkout session", stripe_error=str(exc.user_message or exc)[:300])
        raise ApiError(502, "payment_provider_error", "Stripe could not create the checkout session") from None


@dataclass(frozen=True)
class WebhookSecrets:
    """The endpoint's signing secrets: during a rotation Stripe signs with each, and an
    event signed by any of them is Stripe's."""

    secrets: tuple[str, ...]
    tolerance_s: int


def verify_webhook(payload: bytes, signature: str | None, secrets: WebhookSecrets) -> dict[str, Any]:
    """Verify Stripe's signature with the SDK and the timestamp both ways, then parse.
    Raises ApiError(400) on any doubt."""
    if not signature:
        raise ApiError(400, "missing_signature", "Stripe-Signature header is required")
    _within_tolerance(signature, secrets.tolerance_s)
    text = payload.decode("utf-8", "replace")
    for secret in secrets.secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature, secret, secrets.tolerance_s)
            break
        except stripe.SignatureVerificationError as exc:
            if "tolerance" in str(exc).lower():
                raise ApiError(400, "timestamp_outside_tolerance", "signature timestamp is too old") from None
    else:
        raise ApiError(400, "invalid_signature", "signature does not match the payload")
    try:
        event = json.loads(payload)
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
        ):
            raise ValueError("not a Stripe event")
    except ValueError:
        raise ApiError(400, "malformed_payload", "payload is not a Stripe event JSON object") from None
    return event


def _within_tolerance(signature: str, tolerance_s: int) -> None:
    """The SDK refuses an old timestamp; a timestamp from the future is refused here: a
    replayed capture must not be dated ahead to outlive the tolerance."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if not stamps or not stamps[0].isdigit():
        raise ApiError(400, "invalid_signature", "signature has no timestamp")
    if int(stamps[0]) > time.time() + tolerance_s:
        raise ApiError(400, "timestamp_outside_tolerance", "signature timestamp is in the future")


async def ingest_webhook(event: dict[str, Any], pool: asyncpg.Pool, stripe_side: "StripeSide") -> str:
    """Record the event once and, in the same transaction, move the Stripe object it is
    about and publish (or park) the facts that move stands for. Returns the outcome."""
    seen = observe(event)  # Malformed: refused before anything is stored
    intent = payment_intent_of(event)
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.record_event(conn, event, "received"):
            return "duplicate"
        if intent is not None:
            outcome = await top_ups.observe_intent(
                conn, event["type"], intent, stripe_side.gateway, stripe_side.top_ups
            )
        else:
            outcome = await apply_observation(conn, event["id"], seen, stripe_side)
        await repo.set_outcome(conn, event["id"], outcome)
    log.info("stripe event accepted", stripe_event_id=event["id"], stripe_event_type=event["type"], outcome=outcome)
    return outcome


def payment_intent_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The PaymentIntent a payment_intent.* event carries (Malformed without one)."""
    if event.get("type") not in PAYMENT_INTENT_EVENTS:
        return None
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("id", "currency")):
        raise Malformed(f"{event.get('type')} without a PaymentIntent carrying an id and a currency")
    if not isinstance(obj.get("amount"), int):
        raise Malformed(f"{event.get('type')} without an amount")
    return obj


@dataclass(frozen=True)
class StripeSide:
    """What reading Stripe's events needs: the plans, Stripe itself when an event cannot
    decide an object's state, and how top-ups are priced."""

    catalog: Catalog
    gateway: StripeCheckout
    top_ups: TopUpRules = DEFAULT_TOP_UPS


async def apply_observation(
    conn: asyncpg.Connection, cause: str, seen: Observation | None, stripe_side: StripeSide
) -> str:
    if seen is None:
        return "ignored"
    await repo.lock(conn, seen.object_id)
    known = await repo.known(conn, seen.object_id)
    decision = decide(known, seen)
    if decision == "undecided":
        fetched = await stripe_side.gateway.retrieve(seen.kind, seen.object_id)
        seen = observe_object(seen.kind, fetched, int(time.time()))
        decision = "stale" if seen is None else decide(known, seen)
    if decision != "forward" or seen is None:
        return "stale"
    try:
        out = facts(known, seen, stripe_side.catalog, cause)
    except Unprocessable as exc:
        log.error("stripe event cannot be processed", reason=str(exc), stripe_event_id=cause)
        return "unprocessable"
    await repo.move(conn, seen)
    if not out:
        return "recorded"
    return "published" if await publish(conn, seen, out, cause) else "parked"


async def publish(conn: asyncpg.Connection, seen: Observation, out: list[Event], cause: str) -> bool:
    """Publish the facts, unless what they depend on has not been published yet: then they
    wait, and go out when it is. A paid session lets go of what waited for it."""
    if seen.needs:
        await repo.lock(conn, seen.needs)
        owner = await repo.provider(conn, seen.needs)
        if owner is None:
            for fact in out:
                await repo.park(conn, seen.needs, fact.event_id, fact.model_dump(mode="json"), cause)
            log.info("facts parked until their dependency", dependency=seen.needs, facts=len(out))
            return False
        out = [_owned_by(fact, owner) for fact in out]
    for fact in out:
        await outbox.add(conn, PAYMENTS_EVENTS, _key(fact), fact)
    for dependency in seen.provides:
        assert seen.account_id is not None
        await repo.lock(conn, dependency)
        await repo.provide(conn, dependency, seen.account_id)
        for payload in await repo.unpark(conn, dependency):
            waited = _owned_by(payments_event.validate_python(payload), seen.account_id)
            await outbox.add(conn, PAYMENTS_EVENTS, _key(waited), waited)
    return True


def _owned_by(fact: Event, account_id: str) -> Event:
    """A dependent fact belongs to whoever made the payment or subscription it follows,
    and goes to that customer's partition, after it."""
    return fact.model_copy(update={"account_id": account_id})


def _key(fact: Event) -> str:
    return str(getattr(fact, "account_id", None) or "")


async def replay_unprocessable(
    pool: asyncpg.Pool, stripe_side: StripeSide, event_id: str | None, since: datetime | None
) -> list[tuple[str, str]]:
    """Apply again the stored events that could not be processed (after a fix, say a plan
    added to the catalog); returns each event's id and its new outcome."""
    async with pool.acquire() as conn:
        events = await repo.stored_events(conn, event_id, since, "unprocessable")
    done = []
    for event in events:
        async with pool.acquire() as conn, conn.transaction():
            outcome = await apply_observation(conn, event["id"], observe(event), stripe_side)
            await repo.set_outcome(conn, event["id"], outcome)
        done.append((event["id"], outcome))
    return done
