"""A customer's balances and usage: on the public listener for the customer (by one of
their API keys), and on the admin listener for operators and Tollgate's own services."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from tollgate_shared.http import ApiError, Instant, RequestBody
from tollgate_shared.runtime import Runtime

from . import repo
from .domain import customer_credits
from .views import Balances, BalanceView, Grants, GrantView, Usage, balance_view


class AccountSettings(RequestBody):
    low_balance_threshold: int | None = Field(default=None, ge=0, le=10**15)
    spend_rule: Literal["conservative", "optimistic"] | None = None


def router(runtime: Runtime, guard: Callable[..., Any], tags: list[str]) -> APIRouter:
    r = APIRouter(dependencies=[Depends(guard)], tags=list(tags))

    @r.get("/v1/accounts/{account_id}/balance")
    async def balance(account_id: str, asset: Literal["CALLS"] = "CALLS") -> BalanceView:
        """The customer's spendable credits."""
        async with runtime.pool.acquire() as conn:
            b = await repo.balance(conn, customer_credits(account_id).id)
        if b is None:
            raise ApiError(404, "account_not_found", f"no {asset} balance for account {account_id!r}")
        return balance_view(b)

    @r.get("/v1/accounts/{account_id}/balances")
    async def balances(account_id: str) -> Balances:
        """Every ledger account the customer owns (credits, prepaid money, overdrawn usage)."""
        async with runtime.pool.acquire() as conn:
            found = await repo.balances_of(conn, account_id)
        if not found:
            raise ApiError(404, "account_not_found", f"no ledger accounts for {account_id!r}")
        return Balances(account_id=account_id, balances=[balance_view(b) for b in found])

    @r.get("/v1/accounts/{account_id}/grants")
    async def grants(account_id: str) -> Grants:
        """The credits the customer holds, grant by grant: what is left of each and when it ends."""
        async with runtime.pool.acquire() as conn:
            rows = await repo.grants_of(conn, customer_credits(account_id).id)
        return Grants(account_id=account_id, grants=[GrantView(**dict(r)) for r in rows])

    @r.put("/v1/accounts/{account_id}/settings")
    async def account_settings(account_id: str, body: AccountSettings) -> BalanceView:
        """The customer's low-balance threshold and the rule that gates spending their credits."""
        async with runtime.pool.acquire() as conn:
            found = await repo.update_settings(
                conn, customer_credits(account_id).id, body.low_balance_threshold, body.spend_rule
            )
            b = await repo.balance(conn, customer_credits(account_id).id)
        if not found or b is None:
            raise ApiError(404, "account_not_found", f"no credits account for {account_id!r}")
        return balance_view(b)

    @r.get("/v1/accounts/{account_id}/usage")
    async def usage(
        account_id: str, start: Annotated[Instant, Query(alias="from")], end: Annotated[Instant, Query(alias="to")]
    ) -> Usage:
        """Units of usage booked in [from, to): what reconciliation compares with keys and Stripe."""
        if end <= start:
            raise ApiError(422, "invalid_period", "'to' must be after 'from'")
        async with runtime.pool.acquire() as conn:
            burned = await repo.usage_burned(conn, account_id, start, end)
        return Usage.model_validate({"account_id": account_id, "from": start, "to": end, "units_burned": burned})

    return r
