"""The keys service's use cases: issue, validate (and consume), revoke."""

from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg
from cryptography.fernet import Fernet

from tollgate_shared import outbox
from tollgate_shared.contracts import (
    BalanceUpdated,
    InvoicePaid,
    InvoicePaymentFailed,
    KeyIssued,
    KeyRevoked,
    KeyToppedUp,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
)
from tollgate_shared.contracts.envelope import event_id_for
from tollgate_shared.contracts.topics import KEYS_EVENTS
from tollgate_shared.logging import get_logger

from . import keyformat, repo
from .batcher import Batcher, Request
from .domain import Reason, limits_from_features

log = get_logger(__name__)


@dataclass(frozen=True)
class KeySecrets:
    environment: str
    hash_secret: bytes
    delivery: Fernet


async def issue_key(fact: PaymentSucceeded | SubscriptionStarted, pool: asyncpg.Pool, secrets: KeySecrets) -> bool:
    """One key per paid Checkout Session; its plaintext leaves only encrypted, in the event."""
    plaintext = keyformat.generate(secrets.environment)
    key_id = uuid4()
    quota = fact.credits if isinstance(fact, PaymentSucceeded) else None
    async with pool.acquire() as conn, conn.transaction():
        if await repo.source_handled(conn, fact.checkout_session_id):
            log.info("payment already handled", checkout_session_id=fact.checkout_session_id)
            return False
        if isinstance(fact, PaymentSucceeded) and await _top_up(conn, fact):
            return False
        created = await repo.insert_key(
            conn,
            key_id=key_id,
            account_id=fact.account_id,
            key_hash=keyformat.hash_key(secrets.hash_secret, plaintext),
            key_display=keyformat.display(plaintext),
            plan=fact.plan,
            billing=fact.billing,
            quota_limit=quota,
            features=list(fact.features),
            source_ref=fact.checkout_session_id,
            limits=limits_from_features(fact.features),
            subscription_id=fact.subscription_id if isinstance(fact, SubscriptionStarted) else None,
            payment_intent_id=fact.payment_intent_id if isinstance(fact, PaymentSucceeded) else None,
            customer_email=fact.customer_email,
            product_name=fact.product_name,
        )
        if not created:
            log.info("key already issued for this session", checkout_session_id=fact.checkout_session_id)
            return False
        await outbox.add(
            conn,
            KEYS_EVENTS,
            fact.account_id,
            KeyIssued(
                event_id=event_id_for("KeyIssued", str(key_id)),
                causation_id=str(fact.event_id),
                correlation_id=fact.correlation_id,
                key_id=key_id,
                account_id=fact.account_id,
                customer_email=fact.customer_email,
                customer_name=fact.customer_name,
                plan=fact.plan,
                product_name=fact.product_name,
                billing=fact.billing,
                quota=quota,
                features=fact.features,
                key_display=keyformat.display(plaintext),
                key_ciphertext=secrets.delivery.encrypt(plaintext.encode()).decode(),
            ),
        )
    log.info("key issued", key_id=str(key_id), account_id=fact.account_id, plan=fact.plan)
    return True


async def _top_up(conn: asyncpg.Connection, fact: PaymentSucceeded) -> bool:
    """A customer buying a pack they already hold gets more quota on the same key.

    True if this payment was a top-up; False if it needs a new key.
    """
    key = await repo.active_pack_key(conn, fact.account_id, fact.plan)
    if key is None:
        return False
    quota = await repo.top_up(conn, key.id, fact.checkout_session_id, fact.credits)
    await outbox.add(
        conn,
        KEYS_EVENTS,
        fact.account_id,
        KeyToppedUp(
            event_id=event_id_for("KeyToppedUp", fact.checkout_session_id),
            causation_id=str(fact.event_id),
            key_id=key.id,
            account_id=fact.account_id,
            customer_email=fact.customer_email,
            customer_name=fact.customer_name,
            product_name=fact.product_name,
            added=fact.credits,
            quota=quota,
            key_display=key.key_display,
        ),
    )
    log.info("key topped up", key_id=str(key.id), added=fact.credits, quota=quota)
    return True


@dataclass(frozen=True)
class Validate:
    api_key: str
    units: int
    consume: bool
    route: str | None = None
    method: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class Verdict:
    state: repo.Consumed | None
    consumed: int
    reason: Reason | None

    @property
    def valid(self) -> bool:
        return self.reason is None


async def validate_key(cmd: Validate, pool: asyncpg.Pool, secrets: KeySecrets, batcher: Batcher) -> Verdict:
    if not keyformat.is_well_formed(cmd.api_key):
        return Verdict(None, 0, "malformed")  # a typo never reaches the database
    key_hash = keyformat.hash_key(secrets.hash_secret, cmd.api_key)
    if cmd.consume:
        state = await batcher.consume(Request(key_hash, cmd.units, cmd.route, cmd.method, cmd.status))
    else:
        async with pool.acquire() as conn:
            state = await repo.check(conn, key_hash, cmd.units)
    if state.outcome != "ok":
        return Verdict(state if state.key_id else None, 0, state.outcome)  # type: ignore[arg-type]
    return Verdict(state, cmd.units if cmd.consume else 0, None)


async def learn_balance(event: BalanceUpdated, pool: asyncpg.Pool) -> bool:
    """Keep the ledger's view of a customer's credits, newest version wins (the topic is
    compacted and may be replayed from the start)."""
    if event.usage_total is None or event.ledger_account != f"customer:{event.account_id}:credits":
        return False  # not a credits account: keys gates spending on credits only
    async with pool.acquire() as conn:
        return await repo.learn_balance(conn, event.account_id, event.available, event.usage_total, event.version)


class RotationRefused(Exception):
    pass


async def rotate_key(key_id: UUID, grace_s: float, pool: asyncpg.Pool, secrets: KeySecrets) -> repo.KeyRow:
    """Issue a successor with the same account, plan, quota and limits; the old key works
    as an alias of it for `grace_s`, then expires. The new plaintext goes to the customer
    the way a first key does: encrypted in a KeyIssued event, for the notifier."""
    plaintext, new_id = keyformat.generate(secrets.environment), uuid4()
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow("SELECT * FROM keys WHERE id = $1 FOR UPDATE", key_id)
        if old is None:
            raise RotationRefused("key_not_found")
        if old["status"] == "revoked" or old["rotated_to"] is not None:
            raise RotationRefused("key_not_rotatable")
        if not old["customer_email"]:
            raise RotationRefused("no_email_on_file")
        await conn.execute(
            # The current windows carry over, so a rotation cannot double a rate limit.
            "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, quota_limit, quota_used, "
            "  features, source_ref, requests_per_minute, requests_per_hour, requests_per_day, units_per_minute, "
            "  subscription_id, payment_intent_id, status, expires_at, customer_email, product_name, "
            "  minute_start, minute_requests, minute_units, hour_start, hour_requests, day_start, day_requests) "
            "SELECT $2, account_id, $3, $4, plan, billing, quota_limit, quota_used, features, 'rotate:' || id, "
            "  requests_per_minute, requests_per_hour, requests_per_day, units_per_minute, subscription_id, "
            "  payment_intent_id, status, expires_at, customer_email, product_name, "
            "  minute_start, minute_requests, minute_units, hour_start, hour_requests, day_start, day_requests "
            "FROM keys WHERE id = $1",
            key_id,
            new_id,
            keyformat.hash_key(secrets.hash_secret, plaintext),
            keyformat.display(plaintext),
        )
        await conn.execute(
            "UPDATE keys SET rotated_to = $2, expires_at = LEAST(coalesce(expires_at, 'infinity'), "
            "  now() + make_interval(secs => $3)) WHERE id = $1",
            key_id,
            new_id,
            grace_s,
        )
        new = await repo.find_by_id(conn, new_id)
        assert new is not None
        await outbox.add(
            conn,
            KEYS_EVENTS,
            new.account_id,
            KeyIssued(
                event_id=event_id_for("KeyIssued", str(new_id)),
                causation_id=f"rotate:{key_id}",
                key_id=new_id,
                account_id=new.account_id,
                customer_email=old["customer_email"],
                plan=new.plan,
                product_name=old["product_name"] or new.plan,
                billing=new.billing,  # type: ignore[arg-type]
                quota=new.quota_limit,
                features=tuple(new.features),
                expires_at=new.expires_at,
                key_display=new.key_display,
                key_ciphertext=secrets.delivery.encrypt(plaintext.encode()).decode(),
            ),
        )
    log.info("key rotated", key_id=str(key_id), successor=str(new_id), grace_s=grace_s)
    return new


async def revoke_key(key_id: UUID, reason: str, pool: asyncpg.Pool) -> repo.KeyRow | None:
    """Revoke a key; revoking a revoked key changes nothing and publishes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        key = await repo.revoke(conn, key_id)
        if key is None:
            return await repo.find_by_id(conn, key_id)
        await outbox.add(
            conn, KEYS_EVENTS, key.account_id, KeyRevoked(key_id=key.id, account_id=key.account_id, reason=reason)
        )
    log.info("key revoked", key_id=str(key_id), reason=reason)
    return key


async def payment_failed(fact: InvoicePaymentFailed, pool: asyncpg.Pool, grace_s: float) -> int:
    """An unpaid invoice: the subscription's keys stop when the grace runs out (the
    consume() function checks suspend_at at the moment of each call)."""
    async with pool.acquire() as conn:
        n = await repo.schedule_suspension(conn, fact.subscription_id, grace_s)
    log.info("keys will be suspended", subscription_id=fact.subscription_id, keys=n, grace_s=grace_s)
    return n


async def invoice_paid(fact: InvoicePaid, pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        n = await repo.resume_subscription(conn, fact.subscription_id)
    log.info("keys resumed", subscription_id=fact.subscription_id, keys=n)
    return n


async def revoke_keys_of(fact: SubscriptionEnded | PaymentRefunded, pool: asyncpg.Pool) -> int:
    """A deleted subscription, or a fully refunded pack, ends its keys."""
    if isinstance(fact, PaymentRefunded):
        if not fact.full:
            return 0  # a partial refund leaves the key; the ledger books the difference
        column, value, reason = "payment_intent_id", fact.payment_intent_id, "payment refunded"
    else:
        column, value, reason = "subscription_id", fact.subscription_id, "subscription ended"
    async with pool.acquire() as conn:
        key_ids = await repo.keys_where(conn, column, value)
    for key_id in key_ids:
        await revoke_key(key_id, reason, pool)
    return len(key_ids)
