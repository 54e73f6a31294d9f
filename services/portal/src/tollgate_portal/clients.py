"""The other services, as the portal reads and asks them: over their admin listeners'
HTTP APIs with the portal's internal token, never their tables."""

from typing import Any

import httpx

from tollgate_shared.errors import Transient
from tollgate_shared.http import ApiError


class Unavailable(ApiError, Transient):
    """A service the portal needs did not answer: 503 on a page, retried by a consumer."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "unavailable", message, {"Retry-After": "5"})


class Upstream:
    def __init__(self, base_url: str, token: str, name: str) -> None:
        self.name = name
        self._http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    async def call(self, method: str, path: str, *, json: Any = None, missing_ok: bool = False) -> Any:
        """The answer's JSON; None for a 404 when `missing_ok`. A refusal is passed on as
        the portal's own error; an unreachable or failing service is 503."""
        try:
            r = await self._http.request(method, path, json=json)
        except httpx.HTTPError:
            raise Unavailable(f"{self.name} cannot be reached; try again shortly") from None
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code >= 500 or r.status_code in (401, 403):
            raise Unavailable(f"{self.name} answered {r.status_code}; try again shortly")
        if r.status_code >= 400:
            error = (
                r.json().get("error", {}) if r.headers.get("content-type", "").startswith("application/json") else {}
            )
            raise ApiError(r.status_code, error.get("code", "refused"), error.get("message", f"{self.name} refused"))
        return r.json() if r.content else None

    async def close(self) -> None:
        await self._http.aclose()


class Services:
    """Every call the portal makes, named for what it means to the customer."""

    def __init__(self, *, keys: Upstream, ledger: Upstream, checkout: Upstream, usage_sync: Upstream) -> None:
        self.keys, self.ledger, self.checkout, self.usage_sync = keys, ledger, checkout, usage_sync

    # checkout
    async def plans(self) -> list[dict[str, Any]]:
        return await self.checkout.call("GET", "/internal/v1/plans")  # type: ignore[no-any-return]

    async def new_account(self, email: str, name: str, idempotency_key: str) -> str:
        made = await self.checkout.call(
            "POST", "/internal/v1/customers", json={"email": email, "name": name, "idempotency_key": idempotency_key}
        )
        return str(made["account_id"])

    async def purchase(self, account: str, plan: str, email: str) -> str:
        made = await self.checkout.call(
            "POST", f"/internal/v1/accounts/{account}/checkout-sessions", json={"plan": plan, "email": email}
        )
        return str(made["url"])

    async def billing_portal(self, account: str) -> str:
        return str((await self.checkout.call("POST", f"/internal/v1/accounts/{account}/billing-portal"))["url"])

    async def saved_card(self, account: str) -> dict[str, str] | None:
        return (await self.checkout.call("GET", f"/internal/v1/accounts/{account}/payment-method"))["card"]  # type: ignore[no-any-return]

    async def top_up(self, account: str, amount: int, source: str, idempotency_key: str) -> dict[str, Any]:
        body = {"amount": amount, "source": source, "idempotency_key": idempotency_key}
        return await self.checkout.call("POST", f"/internal/v1/accounts/{account}/top-ups", json=body)  # type: ignore[no-any-return]

    async def top_ups(self, account: str) -> list[dict[str, Any]]:
        return await self.checkout.call("GET", f"/internal/v1/accounts/{account}/top-ups")  # type: ignore[no-any-return]

    # ledger
    async def balance(self, account: str) -> dict[str, Any] | None:
        return await self.ledger.call("GET", f"/v1/accounts/{account}/balance", missing_ok=True)  # type: ignore[no-any-return]

    async def grants(self, account: str) -> list[dict[str, Any]]:
        return (await self.ledger.call("GET", f"/v1/accounts/{account}/grants"))["grants"]  # type: ignore[no-any-return]

    async def set_threshold(self, account: str, threshold: int) -> None:
        await self.ledger.call("PUT", f"/v1/accounts/{account}/settings", json={"low_balance_threshold": threshold})

    # keys
    async def keys_of(self, account: str) -> list[dict[str, Any]]:
        return (await self.keys.call("GET", f"/v1/admin/accounts/{account}/keys"))["keys"]  # type: ignore[no-any-return]

    async def create_key(self, account: str) -> dict[str, Any]:
        return await self.keys.call("POST", f"/v1/admin/accounts/{account}/keys")  # type: ignore[no-any-return]

    async def rotate_key(self, key_id: str, grace_s: int) -> dict[str, Any]:
        body = {"graceSeconds": grace_s, "show": True}
        return await self.keys.call("POST", f"/v1/admin/keys/{key_id}/rotate", json=body)  # type: ignore[no-any-return]

    async def revoke_key(self, key_id: str) -> None:
        await self.keys.call("POST", f"/v1/admin/keys/{key_id}/revoke", json={"reason": "revoked by the customer"})

    # usage-sync
    async def metered(self, account: str) -> dict[str, Any]:
        return await self.usage_sync.call("GET", f"/v1/usage/{account}")  # type: ignore[no-any-return]

    async def close(self) -> None:
        for upstream in (self.keys, self.ledger, self.checkout, self.usage_sync):
            await upstream.close()
