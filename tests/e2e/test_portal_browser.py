"""The customer's portal in a real browser (Debian's Chromium, driven by Playwright):
one customer's whole day, another who cannot see or touch the first's account, and
axe-core's accessibility checks on every page on the way. Screenshots at phone and
desktop widths go to .artifacts/portal/."""

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.demo import Demo, eventually
from tollgate_devstack.infra import axe_core_script, chromium_binary

ARTIFACTS = REPO_ROOT / ".artifacts" / "portal"
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}
LINK = re.compile(r"https?://\S+/portal/sign-in/[A-Za-z0-9_-]+")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_binary(), args=["--no-sandbox"])
        yield b
        await b.close()


async def sign_in_link(stack: dict[str, Any], email: str, after: int = 0) -> str:
    """The newest sign-in link emailed to `email`, once more than `after` have come."""

    async def probe() -> str | None:
        async with httpx.AsyncClient() as http:
            messages = (await http.get(f"{stack['smtp_http']}/api/messages", params={"to": email})).json()["messages"]
        links = [m for m in messages if LINK.search(m["body"])]
        if len(links) <= after:
            return None
        found = LINK.search(links[-1]["body"])
        assert found is not None
        assert links[-1]["html"] and found.group(0) in links[-1]["html"]  # the HTML part carries it too
        return found.group(0)

    return await eventually(f"a sign-in link for {email}", probe, timeout=30)


async def accessible(page: Page) -> None:
    """axe-core finds no serious or critical violation on the page as it is now."""
    await page.add_script_tag(path=str(axe_core_script(StackConfig.from_env())))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{page.url}: " + "; ".join(bad)


async def snap(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(size)  # type: ignore[arg-type]
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]


async def sign_up(stack: dict[str, Any], page: Page, name: str, email: str) -> None:
    await page.goto(stack["portal_url"])
    await accessible(page)
    await snap(page, "welcome")
    await page.get_by_label("Your name").fill(name)
    await page.locator("#signup-email").fill(email)
    await page.get_by_role("button", name="Create my account").click()
    await page.get_by_role("status").wait_for()
    await page.goto(await sign_in_link(stack, email))
    await accessible(page)
    await page.get_by_role("button", name="Sign me in").click()
    await page.get_by_role("heading", name=f"Hello, {name}").wait_for()


async def figure(page: Page, name: str) -> int:
    return int((await page.get_by_test_id(name).inner_text()).replace(",", ""))


async def shown_key(page: Page) -> str:
    key = await page.get_by_label("Key").input_value()
    assert re.fullmatch(r"tg_test_[0-9A-Za-z]{28}", key), key
    return key


async def test_a_customers_day_in_the_portal(stack: dict[str, Any], browser: Browser) -> None:
    email = f"portal+{secrets.token_hex(4)}@example.com"
    page = await browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    await sign_up(stack, page, "Ada Lovelace", email)
    await accessible(page)

    # Buy a pack through Stripe Checkout; back on the portal the credits arrive.
    await page.locator("form.plan", has_text="Tollgate API Starter").get_by_role("button", name="Buy").click()
    await page.get_by_role("button", name="Pay", exact=True).click()
    await page.get_by_role("link", name="Continue").click()

    async def credited() -> int | None:
        await page.reload()
        return await figure(page, "available") if await page.get_by_test_id("available").count() else None

    assert await eventually("the pack's credits on the dashboard", credited, until=lambda n: n == 1_000, every=1)
    await snap(page, "dashboard")

    # A key made here is shown once, then never again.
    await page.get_by_role("button", name="Create another key").click()
    key = await shown_key(page)
    await accessible(page)
    await snap(page, "key-shown")
    await page.goto(stack["portal_url"])
    assert key not in await page.content()

    # Calls through it move the balance and the usage chart.
    async with Demo(stack, say=lambda _: None) as demo:
        for _ in range(4):
            assert (await demo.validate(key, 10))["isValid"]

    async def used() -> int | None:
        await page.reload()
        return await figure(page, "available")

    await eventually("the calls to be burned", used, until=lambda n: n == 960, every=1)
    await eventually(
        "the usage chart to show them",
        lambda: _reloaded_text(page),
        until=lambda text: f"{key[:8]}…{key[-4:]}: 40" in text,
        every=1,
    )
    csv = await page.request.get(f"{stack['portal_url']}usage.csv?days=1")
    assert csv.ok and ",40" in (await csv.text()).replace(f"{key[:8]}…{key[-4:]}", "")

    # Rotate it: the successor is shown once; the old one keeps working for the grace.
    row = page.locator("tr", has_text=f"{key[-4:]}")
    await row.get_by_label("Old key keeps working for").select_option("1")
    await row.get_by_role("button", name="Rotate").click()
    successor = await shown_key(page)
    assert successor != key
    async with Demo(stack, say=lambda _: None) as demo:
        assert (await demo.validate(successor, 1))["isValid"]
        assert (await demo.validate(key, 1))["isValid"]

    # Top up with the card Checkout saved.
    await page.goto(stack["portal_url"])
    await page.get_by_label(re.compile("Charge my visa ending 4242")).fill("10")
    await page.get_by_role("button", name="Top up").click()
    await page.get_by_role("status").wait_for()
    await eventually("the top-up's credits", used, until=lambda n: n == 958 + 1_000, every=1)

    # Auto-recharge: when available falls below 1,950, buy $5 of credits; then spend.
    await page.get_by_label("Recharge automatically").check()
    await page.get_by_label("When available falls below", exact=True).fill("1950")
    await page.get_by_label("Buy credits for (USD)").fill("5")
    await page.get_by_role("button", name="Save").last.click()
    await page.get_by_role("status").wait_for()
    async with Demo(stack, say=lambda _: None) as demo:
        assert (await demo.validate(successor, 20))["isValid"]  # 1,958 - 20 = 1,938: under the threshold
    await eventually("auto-recharge to fire", used, until=lambda n: n == 1_938 + 500, every=1)
    assert "succeeded" in await page.locator("#auto-recharge").inner_text()
    await accessible(page)
    await snap(page, "after-recharge")

    # Signing out ends the session: the dashboard is gone, the cookie opens nothing.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await page.get_by_role("heading", name="Your API account").wait_for()
    assert "Hello, Ada" not in await page.content()


async def _reloaded_text(page: Page) -> str:
    await page.reload()
    return await page.locator("#usage").inner_text()


async def test_a_customer_cannot_see_or_change_another_ones_account(stack: dict[str, Any], browser: Browser) -> None:
    first, second = (f"{who}+{secrets.token_hex(4)}@example.com" for who in ("alice", "bob"))
    alice = await browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    await sign_up(stack, alice, "Alice", first)
    await alice.locator("form.plan", has_text="Tollgate API Starter").get_by_role("button", name="Buy").click()
    await alice.get_by_role("button", name="Pay", exact=True).click()
    await alice.get_by_role("link", name="Continue").click()
    await alice.get_by_role("button", name="Create another key").click()
    alices_key = await shown_key(alice)
    await alice.goto(stack["portal_url"])
    alices_ids = re.findall(r"/portal/keys/([0-9a-f-]{36})/revoke", await alice.content())
    assert alices_ids

    bob = await (await browser.new_context()).new_page()
    await sign_up(stack, bob, "Bob", second)
    page = await bob.content()
    assert first not in page and alices_key[-4:] not in page and all(i not in page for i in alices_ids)
    csrf = await bob.locator("input[name=csrf]").first.input_value()
    # Bob's session, Bob's CSRF token, Alice's key: refused, and the key still works.
    for action in ("revoke", "rotate"):
        answer = await bob.request.post(
            f"{stack['portal_url']}keys/{alices_ids[0]}/{action}", form={"csrf": csrf, "grace_hours": "0"}
        )
        assert answer.status == 404, action
    # Without the right CSRF token nothing changes either, even one's own.
    answer = await bob.request.post(f"{stack['portal_url']}sign-out-everywhere", form={"csrf": "forged"})
    assert answer.status == 403
    csv = await (await bob.request.get(f"{stack['portal_url']}usage.csv?days=30")).text()
    assert alices_key[-4:] not in csv
    async with Demo(stack, say=lambda _: None) as demo:
        assert (await demo.validate(alices_key, 1))["isValid"]
    # And nobody signed out sees anything: a plain request is the welcome page.
    async with httpx.AsyncClient() as anonymous:
        r = await anonymous.get(stack["portal_url"])
        assert "Create my account" in r.text and "Hello" not in r.text
        assert (await anonymous.get(f"{stack['portal_url']}usage.csv?days=1")).status_code == 401


def test_screenshots_are_saved_for_both_widths() -> None:
    """Run after the walk: its screenshots are the test's artifacts."""
    if not ARTIFACTS.exists():
        pytest.skip("the walk did not run in this session")
    names = {p.name for p in Path(ARTIFACTS).glob("*.png")}
    assert {"dashboard-phone.png", "dashboard-desktop.png"} <= names
