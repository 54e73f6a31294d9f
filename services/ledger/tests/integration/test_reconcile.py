"""Reconciliation against the Stripe emulator (through stripe-mock), over the SDK."""

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import stripe

from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_ledger.book import Book
from tollgate_ledger.consumers import Deps, book_payments
from tollgate_ledger.handlers import credit_purchase
from tollgate_ledger.reconcile import reconcile
from tollgate_shared.contracts import DisputeOpened, Money, PaymentRefunded

from .helpers import purchase


async def paid_session(client: stripe.StripeClient, stripe_url: str, amount: int) -> tuple[str, str]:
    """A customer pays `amount` cents through Checkout at the emulator: (customer, PaymentIntent)."""
    customer = await client.v1.customers.create_async({"email": "finance@example.com"})
    session = await client.v1.checkout.sessions.create_async(
        {
            "mode": "payment",
            "customer": customer.id,
            "success_url": "http://127.0.0.1/ok",
            "metadata": {"plan": "professional", "quantity": "1"},
            "line_items": [
                {
                    "price_data": {"currency": "usd", "unit_amount": amount, "product_data": {"name": "Pro"}},
                    "quantity": 1,
                }
            ],
        }
    )
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{stripe_url}/_emulator/checkout/sessions/{session.id}/complete")
        assert r.status_code == 200, r.text
    completed = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert isinstance(completed.payment_intent, str)
    return customer.id, completed.payment_intent


async def book(pool: asyncpg.Pool, *facts: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await book_payments(Deps(0), conn, list(facts))


async def test_matches_payments_refunds_and_disputes_and_lists_every_difference(
    pool: asyncpg.Pool, stack: dict[str, Any]
) -> None:
    client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": stack["stripe"]})
    await asyncio.sleep(1.1)  # Stripe's `created` is in seconds: start on a second of our own
    start = datetime.now(UTC).replace(microsecond=0)
    customer, pi = await paid_session(client, stack["stripe"], 2_500)
    await book(pool, purchase(customer, 1_000, 2_500).model_copy(update={"payment_intent_id": pi}))
    await client.v1.refunds.create_async({"payment_intent": pi, "amount": 500})
    await book(
        pool,
        PaymentRefunded(
            account_id=customer,
            payment_intent_id=pi,
            amount_refunded=Money(amount_minor=500, currency="usd"),
            full=False,
        ),
    )
    async with httpx.AsyncClient() as http:
        dispute = (await http.post(f"{stack['stripe']}/_emulator/disputes", json={"payment_intent": pi})).json()[
            "dispute"
        ]
    await book(
        pool,
        DisputeOpened(dispute_id=dispute["id"], payment_intent_id=pi, amount=Money(amount_minor=2_500, currency="usd")),
    )
    end = datetime.now(UTC) + timedelta(seconds=2)
    async with pool.acquire() as conn:
        assert await reconcile(conn, client, start, end) == []

    # Now make differences on purpose: a refund the ledger never booked, a payment Stripe never had.
    await client.v1.refunds.create_async({"payment_intent": pi, "amount": 300})
    async with pool.acquire() as conn, conn.transaction():
        b = await Book.open(conn)
        await credit_purchase(b, purchase(customer, 10, 999).model_copy(update={"payment_intent_id": "pi_ghost"}))
    async with pool.acquire() as conn:
        unmatched = await reconcile(conn, client, start, end)
    assert [(u.what, u.reference, u.stripe, u.ledger) for u in unmatched] == [
        ("payment", "pi_ghost", "-", "999 USD/2"),
        ("refund", pi, "800 USD/2", "500 USD/2"),
    ]

    # The CLI prints them and fails.
    schema = await pool.fetchval("SELECT current_schema()")
    env = os.environ | {
        "LEDGER_DATABASE_URL": stack["database_url"],
        "LEDGER_KAFKA_BOOTSTRAP_SERVERS": stack["kafka"],
        "LEDGER_SCHEMA_NAME": schema,
        "LEDGER_STRIPE_API_KEY": STRIPE_API_KEY,
        "LEDGER_STRIPE_API_BASE": stack["stripe"],
    }
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tollgate_ledger.cli",
        "reconcile",
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await cli.communicate()
    assert cli.returncode == 1
    assert out.decode().count("unmatched\t") == 2
    assert "pi_ghost" in out.decode()
