"""The ledger's admin API (operators, on the admin listener): accounts, transfers and
holds, grants and corrections."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Response
from pydantic import AwareDatetime, BaseModel, Field
from starlette.types import ASGIApp, Scope

from tollgate_shared.audit import AuditWriter
from tollgate_shared.fastpath import Answer, FastRoute
from tollgate_shared.http import ApiError, RequestBody, Text
from tollgate_shared.runtime import Runtime

from . import repo
from .book import Book
from .coalescer import Coalescer, Move, Overloaded, Place, Post, Void
from .domain import Account, Rejected, customer_credits
from .handlers import (
    adjust_credits,
    close_account,
    grant_promotional,
    open_account,
    reverse,
)
from .holds import Outcome, Transfer
from .views import BalanceView, Granted, HoldChanged, Reversed, TransferDone, balance_view

MAX_AMOUNT = 10**15
T = TypeVar("T")


class OpenAccount(RequestBody):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_:./-]+$")
    owner: Text = Field(min_length=1, max_length=200)
    owner_kind: Literal["customer", "subscription", "system"] = "customer"
    type: Literal["asset", "liability", "revenue", "expense", "equity"]
    asset: str = Field(min_length=1, max_length=40, pattern=r"^[A-Z][A-Z0-9_]*(/\d)?$")
    flags: list[Literal["no_overdraft", "no_positive"]] = Field(default_factory=list)
    spend_rule: Literal["conservative", "optimistic"] = "conservative"
    low_balance_threshold: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class TransferRequest(RequestBody):
    id: Text = Field(min_length=1, max_length=200, description="The client's id: sending it again is a no-op")
    debit_account: Text = Field(min_length=1, max_length=200)
    credit_account: Text = Field(min_length=1, max_length=200)
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    pending: bool = False
    timeout_s: float | None = Field(default=None, gt=0, le=365 * 86400)
    kind: str = Field(default="transfer", pattern=r"^[a-z_]{1,40}$")
    source_ref: Text | None = Field(default=None, max_length=200)


class PostRequest(RequestBody):
    amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class GrantRequest(RequestBody):
    grant_id: Text = Field(min_length=1, max_length=200)
    units: int = Field(gt=0, le=MAX_AMOUNT)
    expires_at: AwareDatetime | None = None
    reason: Text = Field(default="promotion", min_length=1, max_length=200)


class AdjustmentRequest(RequestBody):
    adjustment_id: Text = Field(min_length=1, max_length=200)
    units: int = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Positive adds credits, negative takes them")
    reason: Text = Field(min_length=1, max_length=200)


class ReverseRequest(RequestBody):
    reason: Text = Field(min_length=1, max_length=200)


def again(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The answer to a request repeated with the same id: 200, and what the first made."""
    return {200: {"model": model, "description": "Already done: the same id was sent before"}}


def refused(exc: Rejected) -> ApiError:
    status = 404 if exc.reason.endswith("not_found") else 409 if exc.reason.startswith("transfer_") else 422
    if exc.reason == "account_not_empty":
        status = 409
    return ApiError(status, exc.reason, str(exc))


async def book_transfer(coalescer: Coalescer, body: TransferRequest) -> tuple[int, TransferDone]:
    """POST /v1/transfers, for the FastAPI route and the fast path alike: 201 created,
    200 if the id was booked before."""
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
    outcome = await _booked(coalescer, Place(t))
    done = TransferDone(id=body.id, status="pending" if body.pending else "posted", outcome=outcome)  # type: ignore[arg-type]
    return (200 if outcome == "exists" else 201), done


async def _booked(coalescer: Coalescer, move: Move) -> Outcome | bool:
    try:
        return await coalescer.book(move)
    except Rejected as exc:
        raise refused(exc) from None
    except Overloaded:
        raise ApiError(
            503, "overloaded", "too many transfers wait; retry after Retry-After", {"Retry-After": "1"}
        ) from None


def transfers_route(
    app: ASGIApp, coalescer: Coalescer, guard: Callable[[Scope], None], audit: AuditWriter | None
) -> FastRoute[TransferRequest]:
    """POST /v1/transfers served in front of the admin app (tollgate_shared.fastpath): at
    thousands a second FastAPI's own stack cost more than booking the transfer."""

    async def handle(body: TransferRequest, _scope: Scope) -> Answer:
        status, done = await book_transfer(coalescer, body)
        return status, done.model_dump(mode="json")

    return FastRoute(
        app, method="POST", path="/v1/transfers", model=TransferRequest, handle=handle, guard=guard, audit=audit
    )


def router(runtime: Runtime, guard: Callable[..., Any], threshold: int, coalescer: Coalescer) -> APIRouter:
    r = APIRouter(dependencies=[Depends(guard)], tags=["operator"])

    async def in_book(work: Callable[[Book], Awaitable[T]]) -> T:
        """Run `work` in a Book of its own transaction; a refusal is answered with its status."""
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                return await work(await Book.open(conn, low_balance_threshold=threshold))
        except Rejected as exc:
            raise refused(exc) from None

    async def credits_balance(account_id: str) -> BalanceView:
        async with runtime.pool.acquire() as conn:
            b = await repo.balance(conn, customer_credits(account_id).id)
        if b is None:
            raise ApiError(404, "account_not_found", f"no credits account for {account_id!r}")
        return balance_view(b)

    @r.post("/v1/accounts/{account_id}/grants", status_code=201, responses=again(Granted))
    async def grant(account_id: str, body: GrantRequest, response: Response) -> Granted:
        """Promotional credits, burned before paid ones, optionally expiring."""
        created = await in_book(
            lambda book: grant_promotional(
                book, body.grant_id, account_id, body.units, expires_at=body.expires_at, reason=body.reason
            )
        )
        if not created:
            response.status_code = 200
        return Granted(grant_id=body.grant_id, account_id=account_id, units=body.units)

    @r.post("/v1/accounts/{account_id}/adjustments", status_code=201, responses=again(BalanceView))
    async def adjust(account_id: str, body: AdjustmentRequest, response: Response) -> BalanceView:
        """A manual adjustment of the customer's credits, booked against its own account."""
        if not await in_book(lambda b: adjust_credits(b, body.adjustment_id, account_id, body.units, body.reason)):
            response.status_code = 200
        return await credits_balance(account_id)

    @r.post("/v1/journal/{tx_id}/reverse", status_code=201)
    async def reverse_entry(tx_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: ReverseRequest) -> Reversed:
        """Correct a transfer by booking its exact opposite (`reverses` points at it)."""
        reversal = await in_book(lambda book: reverse(book, tx_id, body.reason))
        return Reversed(reversed=tx_id, reversal_tx_id=reversal)

    @r.post("/v1/ledger-accounts", status_code=201, responses=again(BalanceView))
    async def open_ledger_account(body: OpenAccount, response: Response) -> BalanceView:
        """Open a ledger account of a type and asset, with its flags; again with the same id: no-op."""
        account = Account(
            body.id, body.owner, body.type, body.asset, tuple(body.flags), body.owner_kind, body.spend_rule
        )
        b, new = await in_book(lambda book: open_account(book, account, body.low_balance_threshold))
        if (b.type, b.asset) != (body.type, body.asset):
            raise ApiError(409, "account_exists", f"{body.id} exists as a {b.type} account in {b.asset}")
        if not new:
            response.status_code = 200
        return balance_view(b)

    @r.post("/v1/ledger-accounts/{ledger_account:path}/close")
    async def close_ledger_account(ledger_account: str) -> BalanceView:
        """Close an account whose balance is zero: nothing is booked on it after."""
        await in_book(lambda book: close_account(book, ledger_account))
        async with runtime.pool.acquire() as conn:
            b = await repo.balance(conn, ledger_account)
        assert b is not None
        return balance_view(b)

    @r.get("/v1/ledger-accounts/{ledger_account:path}")
    async def ledger_account(ledger_account: str) -> BalanceView:
        """Any ledger account's balance."""
        async with runtime.pool.acquire() as conn:
            b = await repo.balance(conn, ledger_account)
        if b is None:
            raise ApiError(404, "account_not_found", f"no ledger account {ledger_account!r}")
        return balance_view(b)

    @r.post("/v1/transfers", status_code=201, responses=again(TransferDone))
    async def transfer(body: TransferRequest, response: Response) -> TransferDone:
        """Move an amount between two accounts of one asset, posted or pending (a hold).
        Sent again with the same id: no-op. Booked with whatever other transfers arrive
        meanwhile, in one commit; answered once committed. (Served by a fast path in
        front of this app: this declaration documents it.)"""
        response.status_code, done = await book_transfer(coalescer, body)
        return done

    @r.post("/v1/transfers/{transfer_id}/post")
    async def post(transfer_id: str, body: PostRequest | None = None) -> HoldChanged:
        """Post a pending transfer, in full or for less (0 voids it)."""
        amount = (body or PostRequest()).amount
        changed = bool(await _booked(coalescer, Post(transfer_id, amount)))
        return HoldChanged(id=transfer_id, status="posted" if amount != 0 else "voided", changed=changed)

    @r.post("/v1/transfers/{transfer_id}/void")
    async def void(transfer_id: str) -> HoldChanged:
        """Release a pending transfer's hold."""
        changed = bool(await _booked(coalescer, Void(transfer_id)))
        return HoldChanged(id=transfer_id, status="voided", changed=changed)

    return r
