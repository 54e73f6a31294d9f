"""Top-ups the three ways of Moesif's prepaid credits, against the running system:
(a) a payment made outside Tollgate becomes credits by its webhook alone; (b) the API
charges the card on file; (c) that call books the credits as pending at once (available
moves, current does not) and the PaymentIntent's outcome posts them, or voids them."""

import asyncio
import secrets
from typing import Any

import httpx

from tollgate_devstack.demo import Demo, eventually


async def customer_with_a_card(demo: Demo, card: str = "4242") -> tuple[str, str]:
    """A customer who bought a starter pack (1,000 credits) with `card`, and their key."""
    email = f"topup+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    r = await demo.http.post(
        f"{demo.ep['stripe']}/_emulator/checkout/sessions/{session['id']}/complete", json={"card": card}
    )
    assert r.status_code == 200, r.text
    await demo.balance_equal(session["customer"], 1_000)
    key, _ = await demo.key_from_email(email)
    return session["customer"], key


async def figures(demo: Demo, account: str) -> tuple[int, int, int]:
    b = await demo.balance(account)
    assert b is not None
    return b["current"], b["pending"], b["available"]


async def top_up(stack: dict[str, Any], key: str, amount: int, idempotency_key: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{stack['checkout']}/v1/top-ups",
            json={"amount": amount},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
        )


async def test_an_api_top_up_is_pending_at_once_then_posted(stack: dict[str, Any], demo: Demo) -> None:
    account, key = await customer_with_a_card(demo)
    assert await figures(demo, account) == (1_000, 0, 1_000)
    # Stripe takes its time to answer: meanwhile the credits are pending, and spendable.
    r = await demo.http.post(
        f"{stack['stripe']}/_emulator/faults", json={"path": "/v1/payment_intents", "match": account, "delay_ms": 4000}
    )
    assert r.status_code == 200
    call = asyncio.create_task(top_up(stack, key, 700, f"t-{account}"))
    pending = await eventually(
        "the top-up's credits to be pending", lambda: figures(demo, account), until=lambda f: f[1] == 700
    )
    assert pending == (1_000, 700, 1_700)  # available moved; current did not
    answer = await call
    assert answer.status_code == 201, answer.text
    assert (answer.json()["state"], answer.json()["credits"]) == ("succeeded", 700)
    await eventually("the credits to be posted", lambda: figures(demo, account), until=lambda f: f == (1_700, 0, 1_700))
    # The same request again charges nothing more.
    again = await top_up(stack, key, 700, f"t-{account}")
    assert again.json()["id"] == answer.json()["id"]
    await asyncio.sleep(1)
    assert await figures(demo, account) == (1_700, 0, 1_700)
    answer = await demo.validate(key, 50)  # the key may spend the new credits: its quota grew with them
    assert answer["isValid"] and answer["quota"]["limit"] == 1_700, answer


async def test_a_declined_top_up_voids_its_pending_credits(stack: dict[str, Any], demo: Demo) -> None:
    account, key = await customer_with_a_card(demo, card="0341")  # pays now, declines off-session
    answer = await top_up(stack, key, 500, f"d-{account}")
    assert (answer.status_code, answer.json()["error"]["code"]) == (402, "card_declined")
    # Pending came and went: the hold was voided, nothing posted.
    await asyncio.sleep(1.5)
    assert await figures(demo, account) == (1_000, 0, 1_000)


async def test_a_payment_made_outside_tollgate_becomes_credits_at_the_rate(stack: dict[str, Any], demo: Demo) -> None:
    account, _ = await customer_with_a_card(demo)
    r = await demo.http.post(f"{stack['stripe']}/_emulator/payments", json={"customer": account, "amount": 2_500})
    assert r.status_code == 200 and r.json()["delivery"]["delivered"], r.text
    await eventually("the outside payment's credits", lambda: figures(demo, account), until=lambda f: f[0] == 3_500)


async def test_top_ups_need_the_accounts_own_key_and_sane_amounts(stack: dict[str, Any], demo: Demo) -> None:
    account, key = await customer_with_a_card(demo)
    assert (await top_up(stack, "tg_test_" + "A" * 28, 700, "x")).status_code == 401
    for amount in (1, 10**8):
        r = await top_up(stack, key, amount, f"bad-{amount}")
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_amount")
    assert await figures(demo, account) == (1_000, 0, 1_000)
