"""The ledger's HTTP edge: balances for customers; transfers, grants and finance for admins."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError, bearer_token_guard
from tollgate_shared.runtime import Runtime

from . import finance, queries
from .book import Book, Rejected
from .config import Settings
from .corrections import adjust_credits, close_account, reverse
from .domain import Account, Balance, customer_credits
from .grants import grant_promotional
from .transfers import Transfer, post_hold, transfer_many, void_hold

MAX_AMOUNT = 10**15
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccount(Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_:./-]+$")
    owner: str = Field(min_length=1, max_length=200)
    owner_kind: Literal["customer", "subscription", "system"] = "customer"
    type: Literal["asset", "liability", "revenue", "expense", "equity"]
    asset: str = Field(min_length=1, max_length=40, pattern=r"^[A-Z][A-Z0-9_]*(/\d)?$")
    flags: list[Literal["no_overdraft", "no_positive"]] = []
    spend_rule: Literal["conservative", "optimistic"] = "conservative"
    low_balance_threshold: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class TransferRequest(Strict):
    id: str = Field(min_length=1, max_length=200, description="The client's id: sending it again is a no-op")
    debit_account: str
    credit_account: str
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    pending: bool = False
    timeout_s: float | None = Field(default=None, gt=0, le=365 * 86400)
    kind: str = Field(default="transfer", pattern=r"^[a-z_]{1,40}$")
    source_ref: str | None = Field(default=None, max_length=200)


class PostRequest(Strict):
    amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class GrantRequest(Strict):
    grant_id: str = Field(min_length=1, max_length=200)
    units: int = Field(gt=0, le=MAX_AMOUNT)
    expires_at: AwareDatetime | None = None
    reason: str = Field(default="promotion", max_length=200)


class AdjustmentRequest(Strict):
    adjustment_id: str = Field(min_length=1, max_length=200)
    units: int = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Positive adds credits, negative takes them")
    reason: str = Field(min_length=1, max_length=200)


class ReverseRequest(Strict):
    reason: str = Field(min_length=1, max_length=200)


class AccountSettings(Strict):
    low_balance_threshold: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    spend_rule: Literal["conservative", "optimistic"] | None = None


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


def refused(exc: Rejected) -> ApiError:
    status = 404 if exc.reason.endswith("not_found") else 409 if exc.reason.startswith("transfer_") else 422
    return ApiError(status, exc.reason, str(exc))


def router(runtime: Runtime, settings: Settings) -> APIRouter:
    r = APIRouter()
    admin = [Depends(bearer_token_guard(settings.admin_token.get_secret_value()))]
    threshold = settings.low_balance_threshold

    async def in_book(work: Any) -> Any:
        async with runtime.pool.acquire() as conn, conn.transaction():
            return await work(await Book.open(conn, low_balance_threshold=threshold))

    @r.get("/v1/accounts/{account_id}/balance")
    async def balance(account_id: str, asset: Literal["CALLS"] = "CALLS") -> dict[str, Any]:
        """The customer's spendable credits."""
        async with runtime.pool.acquire() as conn:
            b = await queries.balance(conn, customer_credits(account_id).id)
        if b is None:
            raise ApiError(404, "account_not_found", f"no {asset} balance for account {account_id!r}")
        return balance_body(b)

    @r.get("/v1/accounts/{account_id}/balances")
    async def balances(account_id: str) -> dict[str, Any]:
        """Every ledger account the customer owns (credits, prepaid money, overdrawn usage)."""
        async with runtime.pool.acquire() as conn:
            found = await queries.balances_of(conn, account_id)
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
            burned = await queries.usage_burned(conn, account_id, start, end)
        return {"account_id": account_id, "from": start.isoformat(), "to": end.isoformat(), "units_burned": burned}

    @r.put("/v1/accounts/{account_id}/settings", dependencies=admin)
    async def account_settings(account_id: str, body: AccountSettings) -> dict[str, Any]:
        """The customer's low-balance threshold and the rule that gates spending their credits."""
        ledger_account = customer_credits(account_id).id
        async with runtime.pool.acquire() as conn:
            updated = await conn.fetchval(
                "UPDATE accounts SET low_balance_threshold = coalesce($2, low_balance_threshold), "
                "  spend_rule = coalesce($3, spend_rule) WHERE id = $1 RETURNING id",
                ledger_account,
                body.low_balance_threshold,
                body.spend_rule,
            )
            if updated is None:
                raise ApiError(404, "account_not_found", f"no credits account for {account_id!r}")
            b = await queries.balance(conn, ledger_account)
        assert b is not None
        return balance_body(b)

    @r.post("/v1/accounts/{account_id}/grants", dependencies=admin, status_code=201)
    async def grant(account_id: str, body: GrantRequest, response: Response) -> dict[str, Any]:
        """Promotional credits, burned before paid ones, optionally expiring."""

        async def work(book: Book) -> bool:
            return await grant_promotional(
                book, body.grant_id, account_id, body.units, expires_at=body.expires_at, reason=body.reason
            )

        if not await in_book(work):
            response.status_code = 200
        return {"grant_id": body.grant_id, "account_id": account_id, "units": body.units}

    @r.post("/v1/accounts/{account_id}/adjustments", dependencies=admin, status_code=201)
    async def adjust(account_id: str, body: AdjustmentRequest, response: Response) -> dict[str, Any]:
        """A manual adjustment of the customer's credits, booked against its own account."""

        async def work(book: Book) -> bool:
            return await adjust_credits(book, body.adjustment_id, account_id, body.units, body.reason)

        try:
            if not await in_book(work):
                response.status_code = 200
        except Rejected as exc:
            raise refused(exc) from None
        async with runtime.pool.acquire() as conn:
            b = await queries.balance(conn, customer_credits(account_id).id)
        assert b is not None
        return balance_body(b)

    @r.post("/v1/journal/{tx_id}/reverse", dependencies=admin, status_code=201)
    async def reverse_entry(tx_id: int, body: ReverseRequest) -> dict[str, Any]:
        """Correct a transfer by booking its exact opposite (`reverses` points at it)."""

        async def work(book: Book) -> int:
            return await reverse(book, tx_id, body.reason)

        try:
            reversal: int = await in_book(work)
        except Rejected as exc:
            raise refused(exc) from None
        return {"reversed": tx_id, "reversal_tx_id": reversal}

    @r.post("/v1/ledger-accounts/{ledger_account:path}/close", dependencies=admin)
    async def close_ledger_account(ledger_account: str) -> dict[str, Any]:
        async def work(book: Book) -> None:
            await close_account(book, ledger_account)

        try:
            await in_book(work)
        except Rejected as exc:
            raise ApiError(409 if exc.reason == "account_not_empty" else 404, exc.reason, str(exc)) from None
        async with runtime.pool.acquire() as conn:
            b = await queries.balance(conn, ledger_account)
        assert b is not None
        return balance_body(b)

    @r.post("/v1/ledger-accounts", dependencies=admin, status_code=201)
    async def open_account(body: OpenAccount, response: Response) -> dict[str, Any]:
        account = Account(
            body.id, body.owner, body.type, body.asset, tuple(body.flags), body.owner_kind, body.spend_rule
        )

        async def work(book: Book) -> Balance:
            existed = await book.conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", body.id)
            await book.load([account])
            if body.low_balance_threshold is not None and not existed:
                await book.conn.execute(
                    "UPDATE accounts SET low_balance_threshold = $2 WHERE id = $1", body.id, body.low_balance_threshold
                )
            if existed:
                response.status_code = 200
            return book.balance(body.id)

        b: Balance = await in_book(work)
        if (b.type, b.asset) != (body.type, body.asset):
            raise ApiError(409, "account_exists", f"{body.id} exists as a {b.type} account in {b.asset}")
        return balance_body(b)

    @r.get("/v1/ledger-accounts/{ledger_account:path}/statement", dependencies=admin)
    async def statement(
        ledger_account: str,
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime, Query(alias="to")],
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            st = await queries.statement(conn, ledger_account, start, end)
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

    @r.get("/v1/ledger-accounts/{ledger_account:path}", dependencies=admin)
    async def ledger_account(ledger_account: str) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            b = await queries.balance(conn, ledger_account)
        if b is None:
            raise ApiError(404, "account_not_found", f"no ledger account {ledger_account!r}")
        return balance_body(b)

    @r.post("/v1/transfers", dependencies=admin, status_code=201)
    async def transfer(body: TransferRequest, response: Response) -> dict[str, Any]:
        t = Transfer(
            body.id,
            body.debit_account,
            body.credit_account,
            body.amount,
            pending=body.pending,
            timeout_s=body.timeout_s,
            kind=body.kind,
            source_ref=body.source_ref,
        )

        async def work(book: Book) -> Any:
            return (await transfer_many(book, [t]))[0]

        outcome = await in_book(work)
        if isinstance(outcome, Rejected):
            raise refused(outcome)
        if outcome == "exists":
            response.status_code = 200
        return {"id": body.id, "status": "pending" if body.pending else "posted", "outcome": outcome}

    @r.post("/v1/transfers/{transfer_id}/post", dependencies=admin)
    async def post(transfer_id: str, body: PostRequest | None = None) -> dict[str, Any]:
        amount = (body or PostRequest()).amount

        async def work(book: Book) -> bool:
            return await post_hold(book, transfer_id, amount)

        try:
            changed = await in_book(work)
        except Rejected as exc:
            raise refused(exc) from None
        return {"id": transfer_id, "status": "posted" if amount != 0 else "voided", "changed": changed}

    @r.post("/v1/transfers/{transfer_id}/void", dependencies=admin)
    async def void(transfer_id: str) -> dict[str, Any]:
        async def work(book: Book) -> bool:
            return await void_hold(book, transfer_id)

        try:
            changed = await in_book(work)
        except Rejected as exc:
            raise refused(exc) from None
        return {"id": transfer_id, "status": "voided", "changed": changed}

    @r.get("/v1/exports/journal", dependencies=admin)
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

    @r.get("/v1/trial-balance", dependencies=admin)
    async def trial_balance(
        period: Annotated[str | None, Query(pattern=PERIOD)] = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            tb = await queries.trial_balance(conn, as_of=as_of, period=period)
        return {
            "accounts": [
                {"account": x.account_id, "type": x.type, "asset": x.asset, "debits": x.debits, "credits": x.credits}
                for x in tb.rows
            ],
            "totals": {asset: {"debits": d, "credits": c} for asset, (d, c) in tb.totals().items()},
            "balanced": not tb.off_balance(),
        }

    @r.post("/v1/periods/{period}/close", dependencies=admin)
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

    @r.get("/v1/verify", dependencies=admin)
    async def verify() -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            problems = await finance.verify(conn)
        return {"ok": not problems, "problems": problems}

    return r
