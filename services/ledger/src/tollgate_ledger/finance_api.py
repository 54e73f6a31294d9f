"""The ledger's finance API (operators, on the admin listener): statements, journal
exports, the trial balance, the revenue roll-forward, period close and verification of
the chain."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from tollgate_shared.http import ApiError, Instant
from tollgate_shared.runtime import Runtime

from . import exports, finance, repo
from .views import (
    PeriodClosed,
    RevenueView,
    StatementView,
    TrialBalanceView,
    Verified,
    closed_view,
    revenue_view,
    statement_view,
    trial_balance_view,
)

PARQUET = "application/vnd.apache.parquet"
PERIOD = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"  # a month from 1970 to 2999


def router(runtime: Runtime, guard: Callable[..., Any], gl: exports.GlCodes) -> APIRouter:
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
        response_class=StreamingResponse,
        responses={200: {"description": "The postings", "content": {"text/csv": {}, PARQUET: {}}}},
    )
    async def export(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None,
        start: Annotated[Instant | None, Query(alias="from")] = None,
        end: Annotated[Instant | None, Query(alias="to")] = None,
        asset: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]*(/\d)?$")] = None,
        format: Literal["csv", "parquet"] = "csv",
    ) -> StreamingResponse:
        """The journal, one row per posting, by booking period or business time (and one
        unit if asked), streamed; the columns are in docs/ledger.md and the Parquet file."""
        if period is None and (start is None or end is None):
            raise ApiError(422, "invalid_period", "give 'period', or both 'from' and 'to'")
        selection = exports.Selection(period, start, end, asset)

        async def body() -> AsyncIterator[bytes]:
            async with runtime.pool.acquire() as conn:
                chunks = exports.rows(conn, selection, gl)
                stream = exports.parquet_chunks(chunks) if format == "parquet" else exports.csv_chunks(chunks)
                async for piece in stream:
                    yield piece

        name = f"journal-{period or f'{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}'}"
        name += f"-{asset.replace('/', '')}" if asset else ""
        headers = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
        return StreamingResponse(body(), media_type=PARQUET if format == "parquet" else "text/csv", headers=headers)

    @r.get("/v1/trial-balance")
    async def trial_balance(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None, as_of: Instant | None = None
    ) -> TrialBalanceView:
        """Every account's opening, debits, credits and closing from the postings themselves:
        in a period (opening before it), or everything before a moment."""
        async with runtime.pool.acquire() as conn:
            tb = await repo.trial_balance(conn, as_of=as_of, period=period)
        return trial_balance_view(tb)

    @r.get("/v1/revenue")
    async def revenue(period: Annotated[str, Query(pattern=PERIOD)]) -> RevenueView:
        """The period's deferred-revenue roll-forward per currency (opening + prepayments -
        recognised - refunds - disputes lost + corrections = closing), tied out to the
        prepaid accounts and the revenue accounts."""
        async with runtime.pool.acquire() as conn:
            lines = await finance.revenue(conn, period)
        return revenue_view(period, lines)

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
