"""The ledger's HTTP edge for a customer's balances and usage."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from tollgate_shared.http import ApiError
from tollgate_shared.runtime import Runtime

from . import repo
from .domain import Balance, customer_credits


def balance_body(b: Balance) -> dict[str, Any]:
    return {
        "ledger_account": b.account_id,
        "account_id": b.owner,
        "type": b.type,
        "asset": b.asset,
        "current": b.current,
        "pending": b.pending,
        "available": b.available,
        "available_conservative": b.available_conservative,
        "available_optimistic": b.available_optimistic,
        "spend_rule": b.spend_rule,
        "debits_posted": b.debits_posted,
        "credits_posted": b.credits_posted,
        "debits_pending": b.debits_pending,
        "credits_pending": b.credits_pending,
        "flags": list(b.flags),
        "version": b.version,
    }


def router(runtime: Runtime) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/accounts/{account_id}/balance")
    async def balance(account_id: str, asset: Literal["CALLS"] = "CALLS") -> dict[str, Any]:
        """The customer's spendable credits."""
        async with runtime.pool.acquire() as conn:
            b = await repo.balance(conn, customer_credits(account_id).id)
        if b is None:
            raise ApiError(404, "account_not_found", f"no {asset} balance for account {account_id!r}")
        return balance_body(b)

    @r.get("/v1/accounts/{account_id}/balances")
    async def balances(account_id: str) -> dict[str, Any]:
        """Every ledger account the customer owns (credits, prepaid money, overdrawn usage)."""
        async with runtime.pool.acquire() as conn:
            found = await repo.balances_of(conn, account_id)
        if not found:
            raise ApiError(404, "account_not_found", f"no ledger accounts for {account_id!r}")
        return {"account_id": account_id, "balances": [balance_body(b) for b in found]}

    @r.get("/v1/accounts/{account_id}/usage")
    async def usage(
        account_id: str, start: Annotated[datetime, Query(alias="from")], end: Annotated[datetime, Query(alias="to")]
    ) -> dict[str, object]:
        """Units of usage booked in [from, to): what reconciliation compares with keys and Stripe."""
        if end <= start:
            raise ApiError(422, "invalid_period", "'to' must be after 'from'")
        async with runtime.pool.acquire() as conn:
            burned = await repo.usage_burned(conn, account_id, start, end)
        return {"account_id": account_id, "from": start.isoformat(), "to": end.isoformat(), "units_burned": burned}

    return r
