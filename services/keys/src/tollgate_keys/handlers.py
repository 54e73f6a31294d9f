"""The keys service's use cases: issue, validate (and consume), rotate, revoke, suspend.

Each takes the connection of a transaction its caller opened (a consumer's batch, or an
HTTP request's), so the change, its outbox events and, for consumers, the Kafka offset
commit together.
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
from cryptography.fernet import MultiFernet

from tollgate_shared import outbox
from tollgate_shared.contracts import (
    BalanceUpdated,
    DisputeClosed,
    InvoicePaid,
    InvoicePaymentFailed,
    KeyIssued,
    KeyRevoked,
    KeyToppedUp,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    event_id_for,
    newest_credits,
)
from tollgate_shared.contracts.topics import KEYS_EVENTS
from tollgate_shared.logging import get_logger

from . import keyformat, repo
from .batcher import Batcher, Request
from .domain import KeyNotFound, KeyRevokedError, Reason, RotationRefused, limits_from_features
from .metrics import MOVED_TO_CURRENT_SECRET

log = get_logger(__name__)


@dataclass(frozen=True)
class KeySecrets:
    environment: str
    hash_secret: bytes
    delivery: MultiFernet  # the first key seals; during a rotation the notifier opens with any
    # Hash secrets rotated out: a key still under one moves to `hash_secret` when next used.
    previous_hash_secrets: tuple[bytes, ...] = ()

    def hashed(self, plaintext: str) -> bytes:
        """The key as it is stored and looked up: under the current hash secret."""
        return keyformat.hash_key(self.hash_secret, plaintext)

    @property
    def hash_secret_id(self) -> str:
        return keyformat.secret_id(self.hash_secret)

    def sealed(self, plaintext: str) -> str:
        """The plaintext as only the notifier can read it."""
        return self.delivery.encrypt(plaintext.encode()).decode()


async def issue_key(
    fact: PaymentSucceeded | SubscriptionStarted, conn: asyncpg.Connection, secrets: KeySecrets
) -> bool:
    """One key per paid Checkout Session; its plaintext is kept only sealed, until the
    notifier has emailed it. A customer buying a pack they already hold gets more quota
    on the same key."""
    if await repo.source_handled(conn, fact.checkout_session_id):
        log.info("payment already handled", checkout_session_id=fact.checkout_session_id)
        return False
    if isinstance(fact, PaymentSucceeded):
        await repo.lift_prepaid_hold(conn, fact.account_id)  # paid credits again
        if await _top_up(conn, fact):
            return False
    plaintext, key_id = keyformat.generate(secrets.environment), uuid4()
    quota = fact.credits if isinstance(fact, PaymentSucceeded) else None
    created = await repo.insert_key(
        conn,
        key_id=key_id,
        account_id=fact.account_id,
        key_hash=secrets.hashed(plaintext),
        hash_secret_id=secrets.hash_secret_id,
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
        return False  # another delivery of this session issued it first
    if isinstance(fact, PaymentSucceeded):
        await _add_pack(conn, fact, key_id)
    issued = KeyIssued(
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
    )
    await repo.seal_for_delivery(conn, key_id, secrets.sealed(plaintext))
    await outbox.add(conn, KEYS_EVENTS, fact.account_id, issued)
    log.info("key issued", key_id=str(key_id), account_id=fact.account_id, plan=fact.plan)
    return True


async def _add_pack(conn: asyncpg.Connection, fact: PaymentSucceeded, key_id: UUID) -> None:
    await repo.add_pack(
        conn,
        fact.checkout_session_id,
        key_id,
        fact.account_id,
        fact.payment_intent_id,
        fact.credits,
        fact.amount.amount_minor,
    )


async def _top_up(conn: asyncpg.Connection, fact: PaymentSucceeded) -> bool:
    """True if the customer already holds a key for this pack, which now has more quota."""
    key = await repo.pack_key(conn, fact.account_id, fact.plan)
    if key is None:
        return False
    await _add_pack(conn, fact, key.id)
    quota = await repo.top_up(conn, key.id, fact.credits)
    topped_up = KeyToppedUp(
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
    )
    await outbox.add(conn, KEYS_EVENTS, fact.account_id, topped_up)
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
    """Whether the key may be used for `units` now; consuming them if asked, exactly,
    through the batcher's group commit."""
    if not keyformat.is_well_formed(cmd.api_key):
        return Verdict(None, 0, "malformed")  # a typo never reaches the database
    key_hash = secrets.hashed(cmd.api_key)
    if cmd.consume:
        state = await batcher.consume(Request(key_hash, cmd.units, cmd.route, cmd.method, cmd.status))
    else:
        async with pool.acquire() as conn:
            state = await repo.check(conn, key_hash, cmd.units)
    if state.outcome == "not_found" and await moved_to_current_secret(pool, secrets, cmd.api_key):
        return await validate_key(cmd, pool, secrets, batcher)
    if state.outcome != "ok":
        return Verdict(state if state.key_id else None, 0, state.outcome)  # type: ignore[arg-type]
    return Verdict(state, cmd.units if cmd.consume else 0, None)


async def find_live_key(conn: asyncpg.Connection, secrets: KeySecrets, api_key: str) -> repo.KeyRow | None:
    """The live key `api_key` is, under the current hash secret or (moved to it now) a previous one."""
    found = await repo.find_live_by_hash(conn, secrets.hashed(api_key))
    if found is None and await moved_to_current_secret(conn, secrets, api_key):
        found = await repo.find_live_by_hash(conn, secrets.hashed(api_key))
    return found


async def moved_to_current_secret(db: asyncpg.Pool | asyncpg.Connection, secrets: KeySecrets, api_key: str) -> bool:
    """After a hash-secret rotation, a key not found under the current secret may be under a
    previous one: if so its row is rewritten under the current secret (its plaintext is at
    hand only now, in the call), and True. Costs nothing when no previous secret is set."""
    if not secrets.previous_hash_secrets:
        return False
    old = [keyformat.hash_key(previous, api_key) for previous in secrets.previous_hash_secrets]
    moved = await repo.move_to_secret(db, old, secrets.hashed(api_key), secrets.hash_secret_id)
    if moved:
        MOVED_TO_CURRENT_SECRET.inc()
        log.info("key moved to the current hash secret", secret_id=secrets.hash_secret_id)
    return moved


async def learn_balances(events: list[BalanceUpdated], conn: asyncpg.Connection) -> None:
    """Keep the ledger's view of customers' credits, newest version wins (the topic is
    compacted and may be replayed from the start). In account order: validation batches
    lock accounts in that order, and balances applied in any other would deadlock with them."""
    for e in newest_credits(events):
        if e.usage_total is not None:  # keys gates spending on credits only
            await repo.learn_balance(conn, e.account_id, e.available, e.usage_total, e.version)


async def rotate_key(
    key_id: UUID, grace_s: float, conn: asyncpg.Connection, secrets: KeySecrets, *, show: bool = False
) -> tuple[repo.KeyRow, str | None]:
    """Issue a successor with the same account, plan, quota and limits; the old key works
    as an alias of it for `grace_s`, then expires. The new plaintext goes to the customer
    the way a first key does (sealed for the notifier, announced by a KeyIssued event),
    or, `show`n, to the caller once (the portal shows it to the signed-in customer)."""
    old = await repo.locked(conn, key_id)
    if old is None:
        raise KeyNotFound(key_id)
    if old["status"] == "revoked" or old["rotated_to"] is not None:
        raise RotationRefused("key_not_rotatable")
    if not old["customer_email"] and not show:
        raise RotationRefused("no_email_on_file")
    plaintext, new_id = keyformat.generate(secrets.environment), uuid4()
    key_hash, display = secrets.hashed(plaintext), keyformat.display(plaintext)
    await repo.insert_successor(conn, key_id, new_id, key_hash, secrets.hash_secret_id, display, grace_s)
    new = await repo.find_by_id(conn, new_id)
    assert new is not None
    issued = KeyIssued(
        event_id=event_id_for("KeyIssued", str(new_id)),
        causation_id=f"rotate:{key_id}",
        key_id=new_id,
        account_id=new.account_id,
        customer_email=old["customer_email"] or "",
        plan=new.plan,
        product_name=old["product_name"] or new.plan,
        billing=new.billing,  # type: ignore[arg-type]
        quota=new.quota_limit,
        features=tuple(new.features),
        expires_at=new.expires_at,
        key_display=new.key_display,
        emailed=not show,
    )
    if not show:
        await repo.seal_for_delivery(conn, new_id, secrets.sealed(plaintext))
    await outbox.add(conn, KEYS_EVENTS, new.account_id, issued)
    log.info("key rotated", key_id=str(key_id), successor=str(new_id), grace_s=grace_s)
    return new, plaintext if show else None


async def create_key(account_id: str, conn: asyncpg.Connection, secrets: KeySecrets) -> tuple[repo.KeyRow, str]:
    """Another key for an account that has bought something: the plan, features and
    limits of its newest live key, no quota of its own (the account's credits, or its
    subscription, bound it). The plaintext goes back to the caller only, once."""
    template = await repo.newest_live(conn, account_id)
    if template is None:
        raise KeyNotFound(account_id)
    plaintext, key_id = keyformat.generate(secrets.environment), uuid4()
    await repo.insert_key(
        conn,
        key_id=key_id,
        account_id=account_id,
        key_hash=secrets.hashed(plaintext),
        hash_secret_id=secrets.hash_secret_id,
        key_display=keyformat.display(plaintext),
        plan=template["plan"],
        billing=template["billing"],
        quota_limit=None,
        features=list(template["features"]),
        source_ref=f"created:{key_id}",
        limits=limits_from_features(template["features"]),
        subscription_id=template["subscription_id"],
        customer_email=template["customer_email"],
        product_name=template["product_name"],
    )
    new = await repo.find_by_id(conn, key_id)
    assert new is not None
    issued = KeyIssued(
        event_id=event_id_for("KeyIssued", str(key_id)),
        causation_id=f"create:{account_id}",
        key_id=key_id,
        account_id=account_id,
        customer_email=template["customer_email"] or "",
        plan=new.plan,
        product_name=template["product_name"] or new.plan,
        billing=new.billing,  # type: ignore[arg-type]
        quota=None,
        features=tuple(new.features),
        key_display=new.key_display,
        emailed=False,
    )
    await outbox.add(conn, KEYS_EVENTS, account_id, issued)
    log.info("key created", key_id=str(key_id), account_id=account_id)
    return new, plaintext


async def revoke_key(key_id: UUID, reason: str, conn: asyncpg.Connection) -> repo.KeyRow:
    """Revoke a key; revoking a revoked key changes nothing and publishes nothing."""
    key = await repo.revoke(conn, key_id)
    if key is None:
        existing = await repo.find_by_id(conn, key_id)
        if existing is None:
            raise KeyNotFound(key_id)
        return existing
    revoked = KeyRevoked(key_id=key.id, account_id=key.account_id, reason=reason)
    await outbox.add(conn, KEYS_EVENTS, key.account_id, revoked)
    log.info("key revoked", key_id=str(key_id), reason=reason)
    return key


async def set_key_status(key_id: UUID, status: str, conn: asyncpg.Connection) -> repo.KeyRow:
    """An admin's suspension or resumption. A revoked key stays revoked."""
    key = await repo.set_status(conn, key_id, status)
    return key or await _refused_change(key_id, conn)


async def set_key_expiry(key_id: UUID, expires_at: datetime | None, conn: asyncpg.Connection) -> repo.KeyRow:
    """Set (or clear) the moment the key stops working. A revoked key stays revoked."""
    key = await repo.set_expiry(conn, key_id, expires_at)
    return key or await _refused_change(key_id, conn)


async def _refused_change(key_id: UUID, conn: asyncpg.Connection) -> repo.KeyRow:
    if await repo.find_by_id(conn, key_id) is None:
        raise KeyNotFound(key_id)
    raise KeyRevokedError(key_id)


async def payment_failed(fact: InvoicePaymentFailed, conn: asyncpg.Connection, grace_s: float) -> int:
    """An unpaid invoice: the subscription's keys stop when the grace runs out (validation
    checks suspend_at at the moment of each call) unless it is paid first."""
    if not await repo.invoice_unpaid(conn, fact.invoice_id, fact.subscription_id):
        return 0  # an older attempt at an invoice since paid
    n = await repo.schedule_suspension(conn, fact.subscription_id, grace_s)
    log.info("keys will be suspended", subscription_id=fact.subscription_id, keys=n, grace_s=grace_s)
    return n


async def invoice_paid(fact: InvoicePaid, conn: asyncpg.Connection) -> int:
    """Once no invoice of the subscription is unpaid, its keys' billing hold goes; an
    operator's suspension stays."""
    if not await repo.invoice_paid(conn, fact.invoice_id, fact.subscription_id):
        return 0
    n = await repo.lift_subscription_hold(conn, fact.subscription_id)
    log.info("keys resumed", subscription_id=fact.subscription_id, keys=n)
    return n


async def end_subscription(fact: SubscriptionEnded, conn: asyncpg.Connection) -> int:
    """A deleted subscription ends the keys it paid for: its calls could be billed to nobody."""
    key_ids = await repo.keys_where(conn, "subscription_id", fact.subscription_id)
    for key_id in key_ids:
        await revoke_key(key_id, "subscription ended", conn)
    return len(key_ids)


async def money_returned(fact: PaymentRefunded | DisputeClosed, conn: asyncpg.Connection) -> bool:
    """A refund or a lost dispute of a pack. Once all the pack's money has gone back, the
    pack ends and its unused quota with it; the account's prepaid keys stop only when it
    has no pack left, so a refund never takes away what another pack paid for. Returns
    whether the pack ended."""
    pack = await repo.pack_paid_by(conn, fact.payment_intent_id)
    if pack is None:
        return False  # not a pack of a Tollgate key
    if isinstance(fact, PaymentRefunded):
        await repo.record_refunded(conn, pack["source_ref"], fact.amount_refunded.amount_minor)
        returned = max(pack["refunded_minor"], fact.amount_refunded.amount_minor) + pack["disputed_minor"]
        whole = fact.full
    else:
        if fact.outcome != "lost" or fact.dispute_id in pack["lost_disputes"]:
            return False
        await repo.record_lost_dispute(conn, pack["source_ref"], fact.dispute_id, fact.amount.amount_minor)
        returned = pack["refunded_minor"] + pack["disputed_minor"] + fact.amount.amount_minor
        whole = False
    if not (whole or returned >= pack["paid_minor"] > 0) or not await repo.end_pack(conn, pack["source_ref"]):
        return False
    if not await repo.has_live_pack(conn, pack["account_id"]):
        held = await repo.hold_prepaid_keys(conn, pack["account_id"])
        log.info("no paid credits left: prepaid keys stopped", account_id=pack["account_id"], keys=held)
    return True


async def top_up_keys(fact: TopUpRequested | TopUpSucceeded | TopUpFailed, conn: asyncpg.Connection) -> bool:
    """A top-up's credits are spendable from its request, so the account's prepaid keys'
    quota grows then (a top-up paid outside Tollgate grows it when paid); a paid one also
    lifts a billing hold; a failed one takes its growth back."""
    if isinstance(fact, TopUpFailed):
        return await repo.shrink_quota_for_failed_top_up(conn, fact.top_up_id) > 0
    if isinstance(fact, TopUpSucceeded):
        await repo.lift_prepaid_hold(conn, fact.account_id)  # paid credits again
    grown = await repo.grow_quota_for_top_up(conn, fact.top_up_id, fact.account_id, fact.credits)
    log.info("top-up quota", top_up_id=fact.top_up_id, keys=grown)
    return grown > 0
