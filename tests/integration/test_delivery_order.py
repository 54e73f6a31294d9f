"""Stripe delivers in any order, with repeats: the books and the keys must come out as they
would had every event arrived once, in the order Stripe made them.

A lifecycle (packs bought, refunded in part or in full, disputed and won, lost or merely
inquired about; a subscription started, its invoices failed and paid, ended) is played
through checkout, the ledger, keys and the notifier: their real handlers, each on a
PostgreSQL schema of its own, the topics between them read from their outboxes in order,
the emails sent to the stack's SMTP capture. Played once in Stripe's order and once
shuffled with duplicates, the end states must be equal: every ledger balance of the
customer and every dispute hold, every key's status, quota and what validation says,
and the key emails. (Notices are left out by design: a low balance or a failed payment
is announced when it is seen, and which moments were seen depends on delivery.)
"""

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollgate_checkout.domain import DEFAULT_PLANS_PATH, Catalog
from tollgate_checkout.handlers import StripeSide, ingest_webhook
from tollgate_checkout.stripe_gateway import StripeCheckout, make_client
from tollgate_devstack.pytest_plugin import SCHEMAS
from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_keys import consumers as keys_consumers
from tollgate_keys import repo as keys_repo
from tollgate_keys.handlers import KeySecrets
from tollgate_ledger import consumers as ledger_consumers
from tollgate_notifier import consumers as notifier_consumers
from tollgate_notifier.handlers import Deps as NotifierDeps
from tollgate_notifier.mailer import Mailer
from tollgate_notifier.templates import TEMPLATES
from tollgate_shared import db
from tollgate_shared.contracts import BalanceAlert, keys_event, payments_event

PLANS = {"starter": (1_000, 999), "professional": (10_000, 2_500)}  # credits, price in cents

# --- lifecycles ---------------------------------------------------------------------------------

Step = tuple[str, dict[str, Any]]  # an event type, and the object it carries (with {s} for the run)


def pack_steps(i: int, plan: str, fate: str, part: int) -> list[Step]:
    _, price = PLANS[plan]
    session = {
        "id": f"cs_{{s}}_{i}",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "customer": "cus_{s}",
        "customer_details": {"email": "{s}@example.com", "name": "Ada"},
        "metadata": {"plan": plan, "quantity": "1"},
        "amount_total": price,
        "currency": "usd",
        "payment_intent": f"pi_{{s}}_{i}",
    }
    steps: list[Step] = [("checkout.session.completed", session)]
    charge = {"id": f"ch_{{s}}_{i}", "object": "charge", "customer": "cus_{s}", "payment_intent": f"pi_{{s}}_{i}"}
    charge |= {"amount": price, "currency": "usd"}

    def refund(amount: int) -> Step:
        return "charge.refunded", charge | {"amount_refunded": amount, "refunded": amount >= price}

    dispute = {
        "id": f"dp_{{s}}_{i}",
        "object": "dispute",
        "charge": charge["id"],
        "payment_intent": charge["payment_intent"],
    }
    dispute |= {"amount": price, "currency": "usd"}

    def disputed(event: str, status: str) -> Step:
        return event, dispute | {"status": status}

    match fate:
        case "refund_part":
            steps.append(refund(part % (price - 1) + 1))
        case "refund_full":
            steps.append(refund(price))
        case "refund_part_then_full":
            steps += [refund(part % (price - 1) + 1), refund(price)]
        case "dispute_won" | "dispute_lost":
            outcome = fate.removeprefix("dispute_")
            steps += [disputed("charge.dispute.created", "needs_response"), disputed("charge.dispute.closed", outcome)]
        case "inquiry_closed":
            steps += [
                disputed("charge.dispute.created", "warning_needs_response"),
                disputed("charge.dispute.closed", "warning_closed"),
            ]
        case "inquiry_escalated_and_lost":
            steps += [
                disputed("charge.dispute.created", "warning_needs_response"),
                disputed("charge.dispute.updated", "needs_response"),
                disputed("charge.dispute.closed", "lost"),
            ]
    return steps


def subscription_steps(invoices: list[str], deleted: bool) -> list[Step]:
    session = {
        "id": "cs_{s}_sub",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "customer": "cus_{s}",
        "customer_details": {"email": "{s}@example.com", "name": "Ada"},
        "metadata": {"plan": "metered"},
        "amount_total": 0,
        "currency": "usd",
        "subscription": "sub_{s}",
    }
    steps: list[Step] = [("checkout.session.completed", session)]
    for j, story in enumerate(invoices):
        invoice = {"id": f"in_{{s}}_{j}", "object": "invoice", "customer": "cus_{s}", "subscription": "sub_{s}"}
        for attempt in range(1, story.count("f") + 1):
            steps.append(("invoice.payment_failed", invoice | {"status": "open", "attempt_count": attempt}))
        if story.endswith("p"):
            steps.append(("invoice.paid", invoice | {"status": "paid", "attempt_count": story.count("f")}))
    if deleted:
        steps.append(("customer.subscription.deleted", {"id": "sub_{s}", "customer": "cus_{s}", "status": "canceled"}))
    return steps


@st.composite
def lifecycles(draw: st.DrawFn) -> list[Step]:
    """Each object's events in the order Stripe makes them, interleaved at random."""
    fates = [
        "keep",
        "refund_part",
        "refund_full",
        "refund_part_then_full",
        "dispute_won",
        "dispute_lost",
        "inquiry_closed",
        "inquiry_escalated_and_lost",
    ]
    sequences = [
        pack_steps(i, draw(st.sampled_from(sorted(PLANS))), draw(st.sampled_from(fates)), draw(st.integers(0, 10**6)))
        for i in range(draw(st.integers(1, 3)))
    ]
    if draw(st.booleans()):
        invoices = draw(st.lists(st.sampled_from(["f", "fp", "ffp", "p", "ff"]), max_size=3))
        sequences.append(subscription_steps(invoices, draw(st.booleans())))
    chronological: list[Step] = []
    while any(sequences):
        chosen = draw(st.sampled_from([seq for seq in sequences if seq]))
        chronological.append(chosen.pop(0))
    return chronological


def fill(value: Any, s: str) -> Any:
    if isinstance(value, str):
        return value.replace("{s}", s)
    if isinstance(value, dict):
        return {k: fill(v, s) for k, v in value.items()}
    return value


def events(steps: list[Step], s: str) -> list[dict[str, Any]]:
    """The steps as Stripe's events for run `s`, each a second after the one before."""
    return [
        {
            "id": f"evt_{s}_{n}",
            "object": "event",
            "type": kind,
            "created": 1_700_000_000 + n,
            "data": {"object": fill(obj, s)},
        }
        for n, (kind, obj) in enumerate(steps)
    ]


# --- the services, wired by their outboxes ------------------------------------------------------


@dataclass
class World:
    pools: dict[str, asyncpg.Pool]
    stripe_side: StripeSide
    keys: keys_consumers.Deps
    notifier: NotifierDeps
    ledger: ledger_consumers.Deps = field(default_factory=lambda: ledger_consumers.Deps(100))
    read: dict[str, int] = field(default_factory=dict)  # outbox id read up to, per schema

    async def deliver(self, event: dict[str, Any]) -> None:
        """One webhook, then every consumer catches up, as the running system does."""
        await ingest_webhook(event, self.pools["checkout"], self.stripe_side)
        for fact in map(payments_event.validate_python, await self.unread("checkout", "payments.events")):
            await self.apply("ledger", ledger_consumers.book_payments, self.ledger, fact)
            await self.apply("keys", keys_consumers.on_payments, self.keys, fact)
            await self.apply("notifier", notifier_consumers.on_payments, self.notifier, fact)
        for fact in map(keys_event.validate_python, await self.unread("keys", "keys.events")):
            await self.apply("notifier", notifier_consumers.on_key_events, self.notifier, fact)
        for alert in map(BalanceAlert.model_validate, await self.unread("ledger", "ledger.alerts")):
            await self.apply("notifier", notifier_consumers.on_alerts, self.notifier, alert)

    async def unread(self, schema: str, topic: str) -> list[dict[str, Any]]:
        async with self.pools[schema].acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, topic, payload FROM outbox WHERE id > $1 ORDER BY id", self.read.get(schema, 0)
            )
        if rows:
            self.read[schema] = rows[-1]["id"]
        return [r["payload"] for r in rows if r["topic"] == topic]

    async def apply(self, schema: str, handle: Any, deps: Any, fact: Any) -> None:
        async with self.pools[schema].acquire() as conn, conn.transaction():
            await handle(deps, conn, [fact])

    async def end_state(self, s: str) -> dict[str, Any]:
        account = f"cus_{s}"
        async with self.pools["ledger"].acquire() as conn:
            balances = {
                r["account_id"].removeprefix(f"customer:{account}:"): (r["current"], r["pending"])
                for r in await conn.fetch(
                    "SELECT b.account_id, b.credits_posted - b.debits_posted AS current, "
                    "  b.credits_pending - b.debits_pending AS pending "
                    "FROM balances b JOIN accounts a ON a.id = b.account_id WHERE a.owner = $1",
                    account,
                )
            }
            holds = {
                r["id"].replace(s, "s"): (r["state"], r["posted_amount"])
                for r in await conn.fetch("SELECT * FROM pending_transfers WHERE id LIKE $1", f"dispute:dp_{s}_%")
            }
        async with self.pools["keys"].acquire() as conn:
            keys = []
            for k in await conn.fetch("SELECT * FROM keys WHERE account_id = $1 ORDER BY plan", account):
                answer = await keys_repo.check(conn, k["key_hash"], 1)
                keys.append((k["plan"], k["status"], k["quota_limit"], answer.outcome))
        async with self.pools["notifier"].acquire() as conn:
            emails = sorted(
                r["template"]
                for r in await conn.fetch("SELECT template FROM emails WHERE recipient = $1", f"{s}@example.com")
                if r["template"] in ("key_issued", "key_topped_up")
            )
        return {"balances": balances, "holds": holds, "keys": sorted(keys), "key emails": emails}


class KeysSchema:
    """The keys service's internal delivery routes, as the SQL they run, on this test's schema."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def sealed_key(self, key_id: UUID) -> str | None:
        async with self.pool.acquire() as conn:
            return await keys_repo.sealed_delivery(conn, key_id)

    async def forget(self, key_id: UUID) -> None:
        async with self.pool.acquire() as conn:
            await keys_repo.delivered(conn, key_id)


@pytest.fixture
def world(stack: dict[str, Any]) -> Iterator[tuple[World, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()

    async def build() -> World:
        pools = {}
        for service in ("checkout", "ledger", "keys", "notifier"):
            schema = f"test_order_{service}_{secrets.token_hex(4)}"
            await db.migrate(stack["database_url"], schema, SCHEMAS[service])
            pools[service] = await db.create_pool(stack["database_url"], schema, min_size=1, max_size=4)
        gateway = StripeCheckout(make_client(STRIPE_API_KEY, stack["stripe"]), "http://ok", "http://cancel")
        delivery = MultiFernet([Fernet(Fernet.generate_key())])
        secrets_ = KeySecrets("test", b"order-test-hash-secret", delivery)
        mailer = Mailer("127.0.0.1", stack["launcher"].cfg.ports["smtp"], "t@tollgate.local")
        notifier = NotifierDeps(mailer, KeysSchema(pools["keys"]), delivery, TEMPLATES, "http://portal.example")
        return World(
            pools, StripeSide(Catalog.load(DEFAULT_PLANS_PATH), gateway), keys_consumers.Deps(secrets_, 0), notifier
        )

    built = loop.run_until_complete(build())
    yield built, loop

    async def drop() -> None:
        for pool in built.pools.values():
            async with pool.acquire() as conn:
                schema = await conn.fetchval("SELECT current_schema()")
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await pool.close()

    loop.run_until_complete(drop())
    loop.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=lifecycles(), data=st.data())
def test_any_delivery_order_with_repeats_gives_the_books_and_keys_of_stripes_order(
    world: tuple[World, asyncio.AbstractEventLoop], steps: list[Step], data: st.DataObject
) -> None:
    services, loop = world
    in_order, shuffled = secrets.token_hex(5), secrets.token_hex(5)

    delivered = []
    for event in events(steps, shuffled):
        delivered.append(event)
        repeat = data.draw(st.sampled_from(["none", "none", "redelivery", "another event"]))
        if repeat == "redelivery":
            delivered.append(event)
        elif repeat == "another event":  # a second event saying the same of the same object
            delivered.append(event | {"id": event["id"] + "_again"})
    delivered = data.draw(st.permutations(delivered))

    async def play() -> tuple[dict[str, Any], dict[str, Any]]:
        for event in events(steps, in_order):
            await services.deliver(event)
        for event in delivered:
            await services.deliver(event)
        return await services.end_state(in_order), await services.end_state(shuffled)

    expected, actual = loop.run_until_complete(play())
    assert actual == expected
