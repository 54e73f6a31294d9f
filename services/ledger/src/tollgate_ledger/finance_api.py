"""The ledger's finance API (operator bearer token): statements, journal exports, the
trial balance, period close and verification of the chain."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from tollgate_shared.http import ApiError, bearer_token_guard
from tollgate_shared.runtime import Runtime

from . import finance, repo

PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"


def router(runtime: Runtime, admin_token: str) -> APIRouter:
    r = APIRouter(dependencies=[Depends(bearer_token_guard(admin_token))])

    @r.get("/v1/ledger-accounts/{ledger_account:path}/statement")
    async def statement(
        ledger_account: str,
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime, Query(alias="to")],
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            st = await repo.statement(conn, ledger_account, start, end)
        if st is None:
            raise ApiError(404, "account_not_found", f"no ledger account {ledger_account!r}")
        return {
            "ledger_account": st.account_id,
            "asset": st.asset,
            "opening": st.opening,
            "lines": [
                {
                    "tx_id": x.tx_id,
                    "seq": x.seq,
                    "business_time": x.business_time.isoformat(),
                    "kind": x.kind,
                    "amount": x.amount,
                    "balance": x.balance,
                    "source_ref": x.source_ref,
                }
                for x in st.lines
            ],
            "closing": st.closing,
        }

    @r.get("/v1/exports/journal")
    async def export(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
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
            return Response(finance.to_parquet(rows), media_type="application/vnd.apache.parquet", headers=headers)
        return Response(finance.to_csv(rows), media_type="text/csv", headers=headers)

    @r.get("/v1/trial-balance")
    async def trial_balance(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            tb = await repo.trial_balance(conn, as_of=as_of, period=period)
        return {
            "accounts": [
                {"account": x.account_id, "type": x.type, "asset": x.asset, "debits": x.debits, "credits": x.credits}
                for x in tb.rows
            ],
            "totals": {asset: {"debits": d, "credits": c} for asset, (d, c) in tb.totals().items()},
            "balanced": not tb.off_balance(),
        }

    @r.post("/v1/periods/{period}/close")
    async def close(period: Annotated[str, Field(pattern=PERIOD)]) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn, conn.transaction():
            try:
                closed = await finance.close_period(conn, period)
            except finance.CloseRefused as exc:
                raise ApiError(409, "close_refused", str(exc)) from None
        return {
            "period": closed.period,
            "accounts": closed.accounts,
            "chain_seq": closed.chain_seq,
            "chain_hash": closed.chain_hash,
        }

    @r.get("/v1/verify")
    async def verify() -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            problems = await finance.verify(conn)
        return {"ok": not problems, "problems": problems}

    return r
