"""The ledger's finance API (operators, on the admin listener): statements, journal
exports, the trial balance, period close and verification of the chain."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from tollgate_shared.http import ApiError, Instant
from tollgate_shared.runtime import Runtime

from . import finance, repo
from .views import (
    PeriodClosed,
    StatementView,
    TrialBalanceView,
    Verified,
    closed_view,
    statement_view,
    trial_balance_view,
)

PARQUET = "application/vnd.apache.parquet"
PERIOD = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"  # a month from 1970 to 2999


def router(runtime: Runtime, guard: Callable[..., Any]) -> APIRouter:
    r = APIRouter(dependencies=[Depends(guard)], tags=["operator"])

    @r.get("/v1/ledger-accounts/{ledger_account:path}/statement")
    async def statement(
        ledger_account: str,
        start: Annotated[Instant, Query(alias="from")],
        end: Annotated[Instant, Query(alias="to")],
    ) -> StatementView:
        """An account's opening balance, every posting in [from, to) by business time, and its closing balance."""
        async with runtime.pool.acquire() as conn:
            st = await repo.statement(conn, ledger_account, start, end)
        if st is None:
            raise ApiError(404, "account_not_found", f"no ledger account {ledger_account!r}")
        return statement_view(st)

    @r.get(
        "/v1/exports/journal",
        response_class=Response,
        responses={200: {"description": "The postings", "content": {"text/csv": {}, PARQUET: {}}}},
    )
    async def export(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None,
        start: Annotated[Instant | None, Query(alias="from")] = None,
        end: Annotated[Instant | None, Query(alias="to")] = None,
        format: Literal["csv", "parquet"] = "csv",
    ) -> Response:
        """The journal, one row per posting: by booking period, or by business time."""
        if period is None and (start is None or end is None):
            raise ApiError(422, "invalid_period", "give 'period', or both 'from' and 'to'")
        async with runtime.pool.acquire() as conn:
            rows = await finance.journal_rows(conn, finance.Selection(period, start, end))
        name = f"journal-{period or f'{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}'}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "parquet":
            return Response(finance.to_parquet(rows), media_type=PARQUET, headers=headers)
        return Response(finance.to_csv(rows), media_type="text/csv", headers=headers)

    @r.get("/v1/trial-balance")
    async def trial_balance(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None, as_of: Instant | None = None
    ) -> TrialBalanceView:
        """Every account's debits and credits from the postings themselves, as of a moment or through a period."""
        async with runtime.pool.acquire() as conn:
            tb = await repo.trial_balance(conn, as_of=as_of, period=period)
        return trial_balance_view(tb)

    @r.post("/v1/periods/{period}/close")
    async def close(period: Annotated[str, Path(pattern=PERIOD)]) -> PeriodClosed:
        """Close the month after the last closed one: each account's closing balance,
        stamped with the chain's position."""
        async with runtime.pool.acquire() as conn, conn.transaction():
            try:
                closed = await finance.close_period(conn, period)
            except finance.CloseRefused as exc:
                raise ApiError(409, "close_refused", str(exc)) from None
        return closed_view(closed)

    @r.get("/v1/verify")
    async def verify() -> Verified:
        """Recompute the journal's hash chain and running totals; every problem found."""
        async with runtime.pool.acquire() as conn:
            problems = await finance.verify(conn)
        return Verified(ok=not problems, problems=problems)

    return r
