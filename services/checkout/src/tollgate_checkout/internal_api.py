"""Checkout's internal API, for Tollgate's portal acting for a signed-in customer: make
the customer's account, start their purchases, charge their card on file, open Stripe's
Billing Portal. On the admin listener, for internal tokens only."""

import re
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tollgate_shared.auth import Tokens, internal
from tollgate_shared.http import ApiError, RequestBody, Text

from . import top_ups
from .api import EMAIL, Deps, SessionCreated, TopUpView, top_up_view
from .domain import UnknownPlan
from .handlers import StartCheckout, start_checkout

ACCOUNT = r"^cus_[0-9A-Za-z]+$"


class NewCustomer(RequestBody):
    email: str = Field(pattern=EMAIL, max_length=254)
    name: Text = Field(min_length=1, max_length=200)
    idempotency_key: Text = Field(min_length=8, max_length=100)


class CustomerMade(BaseModel):
    account_id: str


class PortalPurchase(RequestBody):
    plan: Text = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=100)
    email: str = Field(pattern=EMAIL, max_length=254)


class PortalTopUp(RequestBody):
    amount: int = Field(gt=0, le=10**9)
    source: Literal["portal", "auto_recharge"]
    idempotency_key: Text = Field(min_length=8, max_length=100)


class Card(BaseModel):
    brand: str
    last4: str


class SavedCardView(BaseModel):
    card: Card | None


class Url(BaseModel):
    url: str


class PlanView(BaseModel):
    name: str
    product_name: str
    mode: str
    credits: int
    amount: int | None
    currency: str | None


def router(deps: Deps, internals: Tokens) -> APIRouter:
    r = APIRouter(dependencies=[Depends(internal(internals, only=frozenset({"portal"})))], tags=["internal"])
    portal = deps.settings.portal_url.rstrip("/")

    @r.get("/internal/v1/plans")
    async def plans() -> list[PlanView]:
        """What can be bought, as the portal shows it."""
        return [
            PlanView(
                name=p.name,
                product_name=p.product_name,
                mode=p.mode,
                credits=p.credits,
                amount=p.price.amount_minor if p.price else None,
                currency=p.price.currency if p.price else None,
            )
            for p in deps.catalog
        ]

    @r.post("/internal/v1/customers", status_code=201)
    async def new_customer(body: NewCustomer) -> CustomerMade:
        """A new Tollgate account (a Stripe customer), for a sign-up."""
        return CustomerMade(account_id=await deps.gateway.create_customer(body.email, body.name, body.idempotency_key))

    @r.post("/internal/v1/accounts/{account_id}/checkout-sessions", status_code=201)
    async def purchase(account_id: str, body: PortalPurchase) -> SessionCreated:
        """A Checkout Session for the account, returning to the portal."""
        _account(account_id)
        try:
            deps.catalog.get(body.plan)
        except UnknownPlan:
            raise ApiError(422, "unknown_plan", f"unknown plan {body.plan!r}") from None
        cmd = StartCheckout(body.plan, body.email, None, body.quantity, None, account_id)
        s = await start_checkout(cmd, deps.catalog, deps.gateway, return_url=f"{portal}/?purchase=done")
        return SessionCreated(id=s.id, url=s.url, customer=s.customer, mode=s.mode)  # type: ignore[arg-type]

    @r.post("/internal/v1/accounts/{account_id}/billing-portal", status_code=201)
    async def billing_portal(account_id: str) -> Url:
        """Stripe's Billing Portal (invoices, payment methods), returning to the portal."""
        return Url(url=await deps.gateway.billing_portal(_account(account_id), f"{portal}/"))

    @r.get("/internal/v1/accounts/{account_id}/payment-method")
    async def saved_card(account_id: str) -> SavedCardView:
        """The card top-ups and auto-recharge charge, if Checkout saved one."""
        card = await deps.gateway.saved_card(_account(account_id))
        return SavedCardView(card=Card(brand=card.brand, last4=card.last4) if card else None)

    @r.post("/internal/v1/accounts/{account_id}/top-ups", status_code=201)
    async def top_up(account_id: str, body: PortalTopUp) -> TopUpView:
        """Charge the card on file for credits (the portal's button, or its auto-recharge
        rule); a decline answers the top-up with state `failed`."""
        made = await top_ups.request_top_up(
            deps.runtime.pool,
            deps.gateway,
            deps.settings.top_up_rules(),
            _account(account_id),
            body.amount,
            body.source,
            body.idempotency_key,
        )
        return top_up_view(made)

    @r.get("/internal/v1/accounts/{account_id}/top-ups")
    async def history(account_id: str) -> list[TopUpView]:
        async with deps.runtime.pool.acquire() as conn:
            return [top_up_view(t) for t in await top_ups.of_account(conn, _account(account_id))]

    return r


def _account(account_id: str) -> str:
    if not re.match(ACCOUNT, account_id):
        raise ApiError(404, "account_not_found", "no such account")
    return account_id
