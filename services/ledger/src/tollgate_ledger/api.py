"""The ledger's HTTP edge: balances."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from tollgate_shared.http import ApiError
from tollgate_shared.runtime import Runtime

from . import repo
from .domain import customer_credits


def router(runtime: Runtime) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/accounts/{account_id}/balance")
    async def balance(account_id: str, asset: Literal["CALLS"] = "CALLS") -> dict[str, object]:
        ledger_account = customer_credits(account_id)
        async with runtime.pool.acquire() as conn:
            b = await repo.get_balance(conn, ledger_account.id)
        if b is None:
            raise ApiError(404, "account_not_found", f"no {asset} balance for account {account_id!r}")
        return {
            "account_id": account_id,
            "ledger_account": b.account_id,
            "asset": b.asset,
            "current": b.current,
            "pending": b.pending,
            "available": b.available,
            "version": b.version,
        }

    @r.get("/v1/accounts/{account_id}/usage")
    async def usage(
        account_id: str, start: Annotated[datetime, Query(alias="from")], end: Annotated[datetime, Query(alias="to")]
    ) -> dict[str, object]:
        """Units burned by usage in [from, to): what reconciliation compares with keys and Stripe."""
        if end <= start:
            raise ApiError(422, "invalid_period", "'to' must be after 'from'")
        async with runtime.pool.acquire() as conn:
            burned = await repo.usage_burned(conn, customer_credits(account_id).id, start, end)
        return {"account_id": account_id, "from": start.isoformat(), "to": end.isoformat(), "units_burned": burned}

    return r
