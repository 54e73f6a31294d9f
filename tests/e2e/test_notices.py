"""The notifier tells customers when their credits run low or out, and when a payment fails."""

import asyncio
import secrets
from typing import Any

import httpx

from tollgate_devstack.demo import Demo, eventually


async def subjects_to(stack: dict[str, Any], email: str) -> list[str]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack['smtp_http']}/api/messages", params={"to": email})
    return [m["subject"] for m in r.json()["messages"]]


async def mail_with(stack: dict[str, Any], email: str, text: str) -> str:
    async def probe() -> str | None:
        return next((s for s in await subjects_to(stack, email) if text in s), None)

    return await eventually(f"an email to {email} about {text!r}", probe)


async def test_low_then_exhausted_credits_are_each_emailed_once(demo: Demo, stack: dict[str, Any]) -> None:
    email = f"notice+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("professional", email)
    await demo.pay(session["id"])
    key, _ = await demo.key_from_email(email)
    assert (await demo.validate(key, 9_950))["isValid"]  # 50 left: below the threshold of 100
    assert "50 left" in await mail_with(stack, email, "running low")
    assert (await demo.validate(key, 50))["isValid"]
    await mail_with(stack, email, "used up")
    subjects = await subjects_to(stack, email)
    assert sum("running low" in s for s in subjects) == 1


async def test_a_failed_subscription_payment_is_emailed(demo: Demo, stack: dict[str, Any]) -> None:
    email = f"dunning+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("metered", email)
    await demo.pay(session["id"])
    await demo.key_from_email(email)  # the key's email also tells the notifier where to write
    async with httpx.AsyncClient() as http:
        sessions = (await http.get(f"{stack['stripe']}/_emulator/sessions")).json()
        sub = next(s for s in sessions if s["id"] == session["id"])["subscription"]
        invoice = {
            "id": f"in_{secrets.token_hex(6)}",
            "object": "invoice",
            "customer": session["customer"],
            "subscription": sub,
            "attempt_count": 1,
        }
        r = await http.post(
            f"{stack['stripe']}/_emulator/events", json={"type": "invoice.payment_failed", "object": invoice}
        )
        assert r.json()["delivery"]["delivered"]
    await mail_with(stack, email, "could not collect")


async def test_a_key_paid_for_while_the_mail_server_is_down_arrives_when_it_is_back(
    demo: Demo, stack: dict[str, Any]
) -> None:
    """A mail server away is a failure that will pass: the notifier retries for as long as
    it takes, and nothing is dead-lettered."""
    launcher = stack["launcher"]
    dead_before = await dead_letters(stack)
    email = f"outage+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    launcher.procs.stop("smtp-capture")
    try:
        await demo.pay(session["id"])
        await demo.balance_equal(session["customer"], 1_000)  # paid and booked, while the mail waits
        await asyncio.sleep(3)  # an outage longer than any quick retry
    finally:
        # Starts what is not running (in a thread: the launcher runs its own event loop).
        await asyncio.to_thread(launcher.up_emulators)
    key, _ = await demo.key_from_email(email)
    assert (await demo.validate(key, 1))["isValid"]
    assert await dead_letters(stack) == dead_before


async def dead_letters(stack: dict[str, Any]) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{stack['notifier_admin']}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("tollgate_dead_lettered_total{")
    )
