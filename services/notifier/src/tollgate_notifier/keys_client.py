"""The keys service's internal API, as the notifier uses it: a new key's sealed
plaintext, fetched to be emailed, then forgotten by the keys service."""

from uuid import UUID

import httpx

from tollgate_shared.errors import Transient


class KeysClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )

    async def sealed_key(self, key_id: UUID) -> str | None:
        """The key's plaintext, sealed; None once the keys service no longer holds it."""
        r = await self._call("GET", f"/internal/v1/deliveries/{key_id}")
        return None if r.status_code == 404 else str(r.json()["sealed"])

    async def forget(self, key_id: UUID) -> None:
        await self._call("DELETE", f"/internal/v1/deliveries/{key_id}")

    async def _call(self, method: str, path: str) -> httpx.Response:
        try:
            r = await self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise Transient(f"keys service unreachable: {exc!r}") from exc
        if r.status_code >= 500 or r.status_code == 429:
            raise Transient(f"keys service answered {r.status_code}")
        if r.status_code not in (200, 204, 404):
            # 401/403: this notifier's token is wrong; fixing it is an operator's job, and
            # the event waits for it rather than going to the dead letters.
            raise Transient(f"keys service refused the notifier ({r.status_code}): check NOTIFIER_KEYS_TOKEN")
        return r

    async def close(self) -> None:
        await self._http.aclose()
