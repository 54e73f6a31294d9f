"""Top-ups: credits bought with the card on file, not through a Checkout page.

Three ways in, as Moesif's prepaid credits have them: a payment made outside Tollgate
for a Tollgate customer (its webhook alone) becomes credits at the configured rate; the
API (`POST /v1/top-ups`) and auto-recharge charge the card on file for an amount; and
those book the credits at once as pending (`TopUpRequested`), which the PaymentIntent's
outcome posts (`TopUpSucceeded`) or voids (`TopUpFailed`).
"""

import hashlib
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

import asyncpg
import stripe

from tollgate_shared import outbox
from tollgate_shared.contracts import Money, TopUpFailed, TopUpRequested, TopUpSucceeded
from tollgate_shared.contracts.checkout import TopUpSource
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.http import ApiError
from tollgate_shared.logging import get_logger

from .stripe_gateway import Declined, StripeCheckout

log = get_logger(__name__)


@dataclass(frozen=True)
class TopUpRules:
    credits_per_minor_unit: Decimal  # 1: a cent buys a credit
    min_minor: int
    max_minor: int
    daily_max_minor: int  # per account, every source but `outside` together
    currency: str = "usd"

    def credits_for(self, amount_minor: int) -> int:
        return int((Decimal(amount_minor) * self.credits_per_minor_unit).to_integral_value(ROUND_DOWN))


DEFAULT_TOP_UPS = TopUpRules(Decimal(1), min_minor=500, max_minor=100_000, daily_max_minor=200_000)


@dataclass(frozen=True)
class TopUp:
    id: str
    account_id: str
    source: str
    amount_minor: int
    currency: str
    credits: int
    state: str
    failure: str | None


def top_up_id(account_id: str, idempotency_key: str) -> str:
    """The same request (same account, same key) is the same top-up."""
    return "tu_" + hashlib.sha256(f"{account_id}:{idempotency_key}".encode()).hexdigest()[:24]


async def request_top_up(
    pool: asyncpg.Pool,
    gateway: StripeCheckout,
    rules: TopUpRules,
    account_id: str,
    amount_minor: int,
    source: TopUpSource,
    idempotency_key: str,
) -> TopUp:
    """Book the credits as pending and charge the card on file, off-session. A decline
    fails the top-up at once; an answer that never came is settled by the webhook."""
    if not rules.min_minor <= amount_minor <= rules.max_minor:
        raise ApiError(422, "invalid_amount", f"a top-up is {rules.min_minor} to {rules.max_minor} minor units")
    credits = rules.credits_for(amount_minor)
    tid = top_up_id(account_id, idempotency_key)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('top-up:' || $1))", account_id)
        existing = await _get(conn, tid)
        if existing is not None:
            return existing
        today = await conn.fetchval(
            "SELECT coalesce(sum(amount_minor), 0) FROM top_ups WHERE account_id = $1 AND source <> 'outside' "
            "AND state <> 'failed' AND requested_at > now() - interval '1 day'",
            account_id,
        )
        if today + amount_minor > rules.daily_max_minor:
            raise ApiError(429, "daily_limit", f"top-ups are limited to {rules.daily_max_minor} minor units a day")
        await conn.execute(
            "INSERT INTO top_ups (id, account_id, source, amount_minor, currency, credits) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            tid,
            account_id,
            source,
            amount_minor,
            rules.currency,
            credits,
        )
        fact = TopUpRequested(
            account_id=account_id,
            top_up_id=tid,
            credits=credits,
            amount=Money(amount_minor=amount_minor, currency=rules.currency),
            source=source,
        )
        await outbox.add(conn, PAYMENTS_EVENTS, account_id, fact)
    try:
        intent = await gateway.charge_off_session(account_id, amount_minor, rules.currency, tid)
        outcome: tuple[bool, str | None, str | None] = (True, intent, None)
    except Declined as exc:
        outcome = (False, exc.payment_intent_id, exc.code)
    except stripe.StripeError as exc:
        # Not an answer about the card: the webhook (or the hold's expiry) settles it.
        log.warning("top-up charge unanswered; its webhook will settle it", top_up_id=tid, error=str(exc)[:200])
        outcome = (False, None, None)
    async with pool.acquire() as conn, conn.transaction():
        succeeded, intent_id, failure = outcome
        if intent_id is not None or failure is not None:
            await settle(conn, tid, succeeded, intent_id, failure)
        settled = await _get(conn, tid)
    assert settled is not None
    return settled


async def settle(
    conn: asyncpg.Connection, tid: str, succeeded: bool, intent_id: str | None, failure: str | None
) -> bool:
    """Move a requested top-up to its outcome, once, with its fact; False if it had one."""
    row = await conn.fetchrow("SELECT * FROM top_ups WHERE id = $1 FOR UPDATE", tid)
    if row is None or row["state"] != "requested":
        return False
    state = "succeeded" if succeeded else "failed"
    await conn.execute(
        "UPDATE top_ups SET state = $2, payment_intent_id = coalesce($3, payment_intent_id), failure = $4, "
        "settled_at = now() WHERE id = $1",
        tid,
        state,
        intent_id,
        failure,
    )
    common: dict[str, Any] = {
        "account_id": row["account_id"],
        "top_up_id": tid,
        "credits": row["credits"],
        "amount": Money(amount_minor=row["amount_minor"], currency=row["currency"]),
        "source": row["source"],
    }
    fact = (
        TopUpSucceeded(**common, payment_intent_id=intent_id or "")
        if succeeded
        else TopUpFailed(**common, reason=failure or "payment_failed")
    )
    await outbox.add(conn, PAYMENTS_EVENTS, row["account_id"], fact)
    log.info("top-up settled", top_up_id=tid, state=state)
    return True


async def observe_intent(
    conn: asyncpg.Connection, event_type: str, intent: dict[str, Any], gateway: StripeCheckout, rules: TopUpRules
) -> str:
    """What a PaymentIntent's webhook means: a top-up of ours settled, or a payment made
    outside Tollgate for one of its customers, which becomes credits."""
    metadata = intent.get("metadata") or {}
    succeeded = event_type == "payment_intent.succeeded"
    if tid := metadata.get("tollgate_top_up"):
        failure = (intent.get("last_payment_error") or {}).get("decline_code") or "payment_failed"
        moved = await settle(conn, tid, succeeded, intent["id"], None if succeeded else failure)
        return "published" if moved else "recorded"
    if metadata.get("tollgate_source") or not succeeded or not intent.get("customer"):
        return "ignored"  # a Checkout payment (its session's events say it), or nothing paid
    if intent.get("invoice") or not await gateway.is_outside_payment(intent):
        return "ignored"  # an invoice's payment, or a customer Tollgate does not know
    tid = f"pi:{intent['id']}"
    amount = int(intent.get("amount_received") or intent["amount"])
    credits = rules.credits_for(amount)
    if credits <= 0:
        return "ignored"
    inserted = await conn.fetchval(
        "INSERT INTO top_ups (id, account_id, source, amount_minor, currency, credits, state, payment_intent_id, "
        "settled_at) VALUES ($1, $2, 'outside', $3, $4, $5, 'succeeded', $6, now()) ON CONFLICT DO NOTHING "
        "RETURNING id",
        tid,
        intent["customer"],
        amount,
        intent["currency"],
        credits,
        intent["id"],
    )
    if inserted is None:
        return "duplicate"
    fact = TopUpSucceeded(
        account_id=intent["customer"],
        top_up_id=tid,
        credits=credits,
        amount=Money(amount_minor=amount, currency=intent["currency"]),
        source="outside",
        payment_intent_id=intent["id"],
    )
    await outbox.add(conn, PAYMENTS_EVENTS, intent["customer"], fact)
    return "published"


async def of_account(conn: asyncpg.Connection, account_id: str, limit: int = 50) -> list[TopUp]:
    rows = await conn.fetch(
        "SELECT * FROM top_ups WHERE account_id = $1 ORDER BY requested_at DESC LIMIT $2", account_id, limit
    )
    return [_top_up(r) for r in rows]


async def _get(conn: asyncpg.Connection, tid: str) -> TopUp | None:
    row = await conn.fetchrow("SELECT * FROM top_ups WHERE id = $1", tid)
    return None if row is None else _top_up(row)


def _top_up(r: asyncpg.Record) -> TopUp:
    return TopUp(
        r["id"], r["account_id"], r["source"], r["amount_minor"], r["currency"], r["credits"], r["state"], r["failure"]
    )
