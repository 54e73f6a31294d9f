"""Every link in every email the system sends resolves: the key email, a low-balance
notice, and a portal sign-in link, in their text and HTML parts alike."""

import re
import secrets
from typing import Any

import httpx

from tollgate_devstack.demo import Demo, eventually

URL = re.compile(r"https?://[^\s<>\"']+")


async def test_every_link_in_every_email_resolves(stack: dict[str, Any], demo: Demo) -> None:
    email = f"links+{secrets.token_hex(4)}@example.com"
    session = await demo.buy("professional", email)
    await demo.pay(session["id"])
    key, _ = await demo.key_from_email(email)
    for _ in range(2):  # below the low-balance threshold (100): a notice
        assert (await demo.validate(key, 4_960))["isValid"]
    await demo.portal_link(email)  # the buyer may sign in to the portal: a sign-in email

    async def all_three() -> list[dict[str, Any]] | None:
        r = await demo.http.get(f"{stack['smtp_http']}/api/messages", params={"to": email})
        messages = r.json()["messages"]
        subjects = " | ".join(m["subject"] for m in messages)
        return messages if all(s in subjects for s in ("API key", "running low", "Sign in")) else None

    messages = await eventually("the key, low-balance and sign-in emails", all_three, timeout=45)
    links = {u.rstrip(".,)") for m in messages for part in (m["body"], m["html"] or "") for u in URL.findall(part)}
    assert any("/portal/sign-in/" in u for u in links) and any(u.endswith("/portal") for u in links), links
    async with httpx.AsyncClient(follow_redirects=True, timeout=15) as http:
        for url in sorted(links):
            r = await http.get(url)
            assert r.status_code == 200, f"{url} answered {r.status_code}"
    for m in messages:
        assert m["html"] and "<html" in m["html"], m["subject"]
