"""One purchase through every service, step by step. `make demo` runs it; so does the e2e test."""

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

KEY_IN_EMAIL = re.compile(r"\btg_(?:test|live)_[0-9A-Za-z]{28}\b")
T = TypeVar("T")


class StepFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


async def eventually(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 30.0,
    *,
    until: Callable[[T], bool] | None = None,
    every: float = 0.25,
) -> T:
    """Poll until `probe` returns something (and `until` holds for it, if given): the
    services are asynchronous, the demo (and every test) is patient."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (result := await probe()) is not None and (until is None or until(result)):
                return result
        except (httpx.HTTPError, KeyError) as exc:
            last = exc
        await asyncio.sleep(every)
    raise StepFailed(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last!r})" if last else "")
    )


@dataclass
class Demo:
    ep: dict[str, str]
    say: Callable[[str], None] = print
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=15))
    step_no: int = 0
    customer_email: str | None = None  # the prepaid pack's buyer, who may then sign in to the portal

    async def __aenter__(self) -> "Demo":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.http.aclose()

    def step(self, text: str) -> None:
        self.step_no += 1
        self.say(f"step {self.step_no}: {text}")

    def ok(self, detail: str) -> None:
        self.say(f"        ok: {detail}")

    # --- building blocks, also used by tests -----------------------------------------------
    async def buy(
        self, plan: str, email: str, name: str = "Ada Lovelace", account_id: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Start a purchase: a first one anonymously, or again for `account_id`, which
        takes one of that account's keys."""
        body = {"plan": plan, "email": email, "name": name} | ({"account_id": account_id} if account_id else {})
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = await self.http.post(f"{self.ep['checkout']}/v1/checkout/sessions", json=body, headers=headers)
        check(r.status_code == 201, f"checkout answered {r.status_code}: {r.text}")
        return r.json()  # type: ignore[no-any-return]

    async def pay(self, session_id: str) -> dict[str, Any]:
        r = await self.http.post(f"{self.ep['stripe']}/_emulator/checkout/sessions/{session_id}/complete")
        check(r.status_code == 200, f"emulator answered {r.status_code}: {r.text}")
        delivery = r.json()
        check(delivery["delivered"], f"webhook not accepted: {delivery}")
        return delivery  # type: ignore[no-any-return]

    @property
    def operator(self) -> dict[str, str]:
        """An operator's credential, for the admin listeners."""
        return {"Authorization": f"Bearer {self.ep['operator_token']}"}

    async def balance(self, account: str, key: str | None = None) -> dict[str, Any] | None:
        """The account's credits: as the customer with one of their keys (the public
        listener), or as an operator (the admin listener)."""
        if key is None:
            r = await self.http.get(f"{self.ep['ledger_admin']}/v1/accounts/{account}/balance", headers=self.operator)
        else:
            r = await self.http.get(
                f"{self.ep['ledger']}/v1/accounts/{account}/balance", headers={"Authorization": f"Bearer {key}"}
            )
        return r.json() if r.status_code == 200 else None

    async def balance_equal(self, account: str, current: int) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            b = await self.balance(account)
            return b if b is not None and b["current"] == current else None

        return await eventually(f"ledger balance of {account} to reach {current}", probe)

    async def key_from_email(self, email: str) -> tuple[str, dict[str, Any]]:
        """The newest API key emailed to `email` (notices may arrive around it)."""

        async def probe() -> dict[str, Any] | None:
            r = await self.http.get(f"{self.ep['smtp_http']}/api/messages", params={"to": email})
            with_key = [m for m in r.json()["messages"] if KEY_IN_EMAIL.search(m["body"])]
            return with_key[-1] if with_key else None

        message = await eventually(f"an email with an API key to {email}", probe)
        found = KEY_IN_EMAIL.search(message["body"])
        assert found is not None
        return found.group(0), message

    async def validate(self, key: str, units: int = 1, consume: bool = True) -> dict[str, Any]:
        r = await self.http.post(
            f"{self.ep['keys']}/v1/keys/validate", json={"apiKey": key, "units": units, "consume": consume}
        )
        check(r.status_code == 200, f"validate answered {r.status_code}: {r.text}")
        return r.json()  # type: ignore[no-any-return]

    async def keys_of(self, account: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.ep['keys_admin']}/v1/admin/accounts/{account}/keys", headers=self.operator)
        check(r.status_code == 200, f"keys admin answered {r.status_code}")
        return r.json()["keys"]  # type: ignore[no-any-return]

    async def portal_link(self, email: str) -> str:
        """A sign-in link to the portal for `email`, asked for as a browser would."""
        async with httpx.AsyncClient(timeout=15) as browser:
            page = await browser.get(self.ep["portal_url"])
            found = re.search(r'name="csrf" value="([^"]+)"', page.text)
            check(found is not None, "the portal's sign-in form has no CSRF token")
            assert found is not None
            r = await browser.post(f"{self.ep['portal_url']}sign-in", data={"email": email, "csrf": found.group(1)})
            check(r.status_code == 303, f"the portal's sign-in answered {r.status_code}")

        async def probe() -> str | None:
            r = await self.http.get(f"{self.ep['smtp_http']}/api/messages", params={"to": email})
            links = [m for m in r.json()["messages"] if "/portal/sign-in/" in m["body"]]
            found = re.search(r"http\S+/portal/sign-in/\S+", links[-1]["body"]) if links else None
            return found.group(0) if found else None

        return await eventually(f"a portal sign-in link for {email}", probe)

    # --- the story ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self.prepaid_pack()
            await self.metered_plan()
        finally:
            await self.http.aclose()

    async def prepaid_pack(self) -> None:
        email = self.customer_email = f"ada+{secrets.token_hex(4)}@example.com"
        self.step("POST /v1/checkout/sessions {plan: professional} creates a Stripe Checkout Session")
        session = await self.buy("professional", email)
        account = session["customer"]
        check(session["mode"] == "payment" and session["url"].startswith("http"), f"unexpected session {session}")
        self.ok(f"session {session['id']} for customer {account}; pay at {session['url']}")

        self.step("Stripe signs checkout.session.completed and posts it to /stripe/webhook")
        delivery = await self.pay(session["id"])
        self.ok(f"event {delivery['event_id']} accepted (HTTP {delivery['attempts'][-1]})")

        self.step("the ledger credits 10,000 call credits in a balanced entry")
        b = await self.balance_equal(account, 10_000)
        self.ok(f"balance current={b['current']} pending={b['pending']} available={b['available']}")

        self.step("keys issues one API key with quota 10,000 and the plan's rate limits")
        keys = await eventually("the key", lambda: self._one_key(account))
        check(keys["quota"]["limit"] == 10_000, f"quota is {keys['quota']}")
        check("api:rate:minute:100" in keys["features"], f"features are {keys['features']}")
        self.ok(f"key {keys['display']} with {', '.join(keys['features'])}")

        self.step("the notifier emails the key, rendered from its template")
        key, message = await self.key_from_email(email)
        check("10,000" in message["body"] and "Professional" in message["subject"], "email not rendered as expected")
        self.ok(f"'{message['subject']}' to {email}")

        self.step("the customer reads their own balance with their key; without it, nobody does")
        mine = await self.balance(account, key)
        check(mine is not None and mine["current"] == 10_000, f"the customer's balance is {mine}")
        assert mine is not None
        anonymous = await self.http.get(f"{self.ep['ledger']}/v1/accounts/{account}/balance")
        check(anonymous.status_code == 401, f"an anonymous read answered {anonymous.status_code}")
        self.ok(f"with the key: available={mine['available']}; without: HTTP {anonymous.status_code}")

        self.step("validate with consume=true takes one unit; the ledger burns one credit")
        v = await self.validate(key, 1)
        check(v["isValid"] and v["unitsConsumed"] == 1, f"validate said {v}")
        check(v["quota"] == {"limit": 10_000, "used": 1, "remaining": 9_999}, f"quota is {v['quota']}")
        check("expiresAt" in v, "no expiresAt in the answer")
        await self.balance_equal(account, 9_999)
        self.ok(f"{v}")

        self.step("the quota runs out: validate refuses, and the ledger agrees with keys exactly")
        v = await self.validate(key, 9_999)
        check(v["isValid"] and v["quota"]["remaining"] == 0, f"validate said {v}")
        refused = await self.validate(key, 1)
        check(not refused["isValid"] and refused["reason"] == "quota_exceeded", f"validate said {refused}")
        b = await self.balance_equal(account, 0)
        used = refused["quota"]["used"]
        check(b["current"] == refused["quota"]["limit"] - used, f"ledger {b['current']} vs keys used {used}")
        self.ok(f"refused with reason={refused['reason']}; keys used {used}, ledger balance {b['current']}")

    async def _one_key(self, account: str) -> dict[str, Any] | None:
        keys = await self.keys_of(account)
        check(len(keys) <= 1, f"more than one key issued: {keys}")
        return keys[0] if keys else None

    async def metered_plan(self) -> None:
        email = f"grace+{secrets.token_hex(4)}@example.com"
        self.step("a metered plan: subscription checkout, webhook, key, calls, usage reported to Stripe")
        session = await self.buy("metered", email, name="Grace Hopper")
        check(session["mode"] == "subscription", f"unexpected session {session}")
        account = session["customer"]
        await self.pay(session["id"])
        key, _ = await self.key_from_email(email)
        for units in (5, 7):
            v = await self.validate(key, units)
            check(v["isValid"] and v["quota"] is None, f"validate said {v}")

        async def reported() -> dict[str, Any] | None:
            r = await self.http.get(f"{self.ep['stripe']}/_emulator/meter_events")
            mine = [e for e in r.json()["events"] if e["payload"]["stripe_customer_id"] == account]
            return mine[0] if mine and sum(int(e["payload"]["value"]) for e in mine) == 12 else None

        event = await eventually("the meter event for the closed window", reported, timeout=60)
        check(event["identifier"].startswith(f"tg-api_calls-{account}-"), f"identifier {event['identifier']}")
        self.ok(f"meter event {event['event_name']} value={event['payload']['value']} identifier={event['identifier']}")
