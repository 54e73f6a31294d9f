"""Keys follow the money: Stripe's billing events suspend, resume and revoke them."""

import secrets
from typing import Any

import httpx

from tollgate_devstack.demo import Demo, eventually


async def send(stack: dict[str, Any], kind: str, obj: dict[str, Any]) -> None:
    """Stripe (the emulator) signs the event and posts it to checkout's webhook."""
    async with httpx.AsyncClient(timeout=15) as http:
        r = await http.post(f"{stack['stripe']}/_emulator/events", json={"type": kind, "object": obj})
    assert r.json()["delivery"]["delivered"], r.text


async def session_of(stack: dict[str, Any], session_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        sessions = (await http.get(f"{stack['stripe']}/_emulator/sessions")).json()
    return next(s for s in sessions if s["id"] == session_id)


async def reason_becomes(demo: Demo, key: str, reason: str | None) -> None:
    async def probe() -> bool | None:
        v = await demo.validate(key, 1, consume=False)
        return True if v.get("reason") == reason else None

    await eventually(f"validate to answer reason={reason}", probe)


async def bought(demo: Demo, plan: str) -> tuple[dict[str, Any], str]:
    email = f"life+{secrets.token_hex(4)}@example.com"
    session = await demo.buy(plan, email)
    await demo.pay(session["id"])
    key, _ = await demo.key_from_email(email)
    return await session_of(demo.ep, session["id"]), key


class TestSubscriptionKeys:
    async def test_a_failed_invoice_suspends_a_paid_one_resumes_a_deleted_subscription_revokes(
        self, stack: dict[str, Any]
    ) -> None:
        async with Demo(stack) as demo:
            session, key = await bought(demo, "metered")
            invoice = {
                "id": f"in_{secrets.token_hex(6)}",
                "customer": session["customer"],
                "subscription": session["subscription"],
                "attempt_count": 1,
            }
            await send(stack, "invoice.payment_failed", invoice)
            await reason_becomes(demo, key, "suspended")  # grace is 0 in the test stack
            await send(stack, "invoice.paid", invoice)
            await reason_becomes(demo, key, None)
            assert (await demo.validate(key, 1))["isValid"]
            await send(
                stack, "customer.subscription.deleted", {"id": session["subscription"], "customer": session["customer"]}
            )
            await reason_becomes(demo, key, "revoked")


class TestPackKeys:
    async def test_a_full_refund_of_the_only_pack_stops_the_key_a_partial_one_does_not(
        self, stack: dict[str, Any]
    ) -> None:
        async with Demo(stack) as demo:
            session, key = await bought(demo, "starter")
            charge = {
                "id": f"ch_{secrets.token_hex(6)}",
                "customer": session["customer"],
                "payment_intent": session["payment_intent"],
                "amount": 999,
                "currency": "usd",
            }
            await send(stack, "charge.refunded", charge | {"amount_refunded": 100, "refunded": False})
            # A tenth of the money back takes a tenth of the credits, and the key stays.
            await demo.balance_equal(session["customer"], 1_000 - 1_000 * 100 // 999)
            assert (await demo.validate(key, 1))["isValid"]
            await send(stack, "charge.refunded", charge | {"amount_refunded": 999, "refunded": True})
            await reason_becomes(demo, key, "suspended")  # no paid credits left: a billing hold
            await demo.balance_equal(session["customer"], 0)

    async def test_an_admin_can_suspend_and_resume_a_key(self, stack: dict[str, Any]) -> None:
        async with Demo(stack) as demo:
            session, key = await bought(demo, "starter")
            (issued,) = await demo.keys_of(session["customer"])
            auth = {"Authorization": f"Bearer {stack['operator_token']}"}
            r = await demo.http.post(f"{stack['keys_admin']}/v1/admin/keys/{issued['id']}/suspend", headers=auth)
            assert r.status_code == 200 and r.json()["status"] == "suspended"
            assert (await demo.validate(key, 1))["reason"] == "suspended"
            r = await demo.http.post(f"{stack['keys_admin']}/v1/admin/keys/{issued['id']}/resume", headers=auth)
            assert r.json()["status"] == "active"
            assert (await demo.validate(key, 1))["isValid"]


class TestTopUp:
    async def test_buying_the_same_pack_again_tops_up_the_key(self, stack: dict[str, Any]) -> None:
        async with Demo(stack) as demo:
            first, key = await bought(demo, "starter")
            account = first["customer"]
            again = await demo.buy("starter", first["customer_email"], account_id=account, key=key)
            assert again["customer"] == account
            await demo.pay(again["id"])
            await demo.balance_equal(account, 2_000)

            async def topped_up() -> dict[str, Any] | None:
                v = await demo.validate(key, 1, consume=False)
                return v if v["quota"]["limit"] == 2_000 else None

            await eventually("the key's quota to grow", topped_up)
            assert len(await demo.keys_of(account)) == 1  # the same key, no second one
            r = await demo.http.get(f"{stack['smtp_http']}/api/messages", params={"to": first["customer_email"]})
            subjects = [m["subject"] for m in r.json()["messages"]]
            assert any("1,000 calls added" in s for s in subjects), subjects
            # The same payment delivered again adds nothing.
            await send(stack, "checkout.session.async_payment_succeeded", await session_of(stack, again["id"]))
            assert (await demo.validate(key, 1, consume=False))["quota"]["limit"] == 2_000

    async def test_buying_for_an_account_takes_that_accounts_key_and_says_nothing_of_others(
        self, stack: dict[str, Any]
    ) -> None:
        """Without that customer's key nobody learns whether an account id exists, nor
        starts a purchase for it."""
        async with Demo(stack) as demo:
            mine, key = await bought(demo, "starter")
        body = {"plan": "starter", "email": mine["customer_email"]}
        async with httpx.AsyncClient() as http:

            async def buy_for(account: str, api_key: str | None) -> tuple[int, str]:
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
                r = await http.post(
                    f"{stack['checkout']}/v1/checkout/sessions", json=body | {"account_id": account}, headers=headers
                )
                return r.status_code, r.json()["error"]["code"]

            assert await buy_for("cus_nobody", None) == (401, "unauthorized")
            assert await buy_for(mine["customer"], None) == (401, "unauthorized")  # the same answer
            assert await buy_for("cus_nobody", key) == (403, "forbidden")
            assert await buy_for(mine["customer"], key[:-4] + "AAAA") == (401, "unauthorized")


async def test_customers_list_their_own_keys_with_any_live_key_and_see_only_prefix_and_last_four(
    demo: Demo, stack: dict[str, Any]
) -> None:
    email = f"self+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    await demo.pay(session["id"])
    key, _ = await demo.key_from_email(email)
    async with httpx.AsyncClient(base_url=stack["keys"], timeout=15) as http:
        r = await http.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        listed = r.json()["keys"]
        assert [k["display"] for k in listed] == [f"{key[:8]}…{key[-4:]}"]
        assert key not in r.text
        assert r.json()["accountId"] == session["customer"]
        for bad in ("", "Bearer tg_test_nope", f"Bearer {key[:-1]}x"):
            assert (await http.get("/v1/keys", headers={"Authorization": bad})).status_code == 401


async def test_rotation_emails_a_successor_and_the_old_key_works_through_the_grace(
    demo: Demo, stack: dict[str, Any]
) -> None:
    email = f"rotate+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("starter", email)
    await demo.pay(session["id"])
    old, _ = await demo.key_from_email(email)
    key_id = (await demo.keys_of(session["customer"]))[0]["id"]
    async with httpx.AsyncClient(base_url=stack["keys_admin"], timeout=15) as http:
        r = await http.post(
            f"/v1/admin/keys/{key_id}/rotate",
            headers={"Authorization": f"Bearer {stack['operator_token']}"},
            json={"graceSeconds": 3600},
        )
        assert r.status_code == 200, r.text

    async def successor() -> str | None:
        new, _ = await demo.key_from_email(email)
        return new if new != old else None

    new = await eventually("the successor key's email", successor)
    assert (await demo.validate(new))["isValid"]
    assert (await demo.validate(old))["isValid"]  # within the grace
    assert len(await demo.keys_of(session["customer"])) == 2
