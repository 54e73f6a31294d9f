"""Checkout Sessions through the official Stripe SDK."""

from dataclasses import dataclass
from typing import Any

import stripe

from .domain import Plan


@dataclass(frozen=True)
class CreatedSession:
    id: str
    url: str
    customer: str
    mode: str


class PlanNotAtStripe(LookupError):
    """The plan's Price does not exist at Stripe: `python -m tollgate_checkout.stripe_sync` makes it."""


class StripeCheckout:
    def __init__(self, client: stripe.StripeClient, success_url: str, cancel_url: str) -> None:
        self._client = client
        self._success_url = success_url
        self._cancel_url = cancel_url
        self._prices: dict[str, str] = {}

    async def create_session(
        self,
        plan: Plan,
        email: str,
        name: str | None,
        quantity: int,
        idempotency_key: str | None,
        account_id: str | None = None,
    ) -> CreatedSession:
        # The customer exists before the session so the Tollgate account id (the
        # Stripe customer id) is known when we answer, not only after payment.
        if account_id:  # buying again: the same customer, so the same Tollgate account
            customer = await self._client.v1.customers.retrieve_async(account_id)
        else:
            customer = await self._client.v1.customers.create_async(
                {"email": email, **({"name": name} if name else {}), "metadata": {"source": "tollgate"}},
                _options(idempotency_key, "customer"),
            )
        params: dict[str, Any] = {
            "mode": plan.mode,
            "customer": customer.id,
            "success_url": self._success_url,
            "cancel_url": self._cancel_url,
            "metadata": {"plan": plan.name, "quantity": str(quantity)},
            "line_items": [
                _line_item(plan, quantity, await self._price_id(plan) if plan.mode == "subscription" else None)
            ],
        }
        session = await self._client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            _options(idempotency_key, "session"),
        )
        return CreatedSession(id=session.id, url=session.url or "", customer=customer.id, mode=plan.mode)

    async def _price_id(self, plan: Plan) -> str:
        """The id of the plan's Price, found by its lookup key once per process."""
        if plan.lookup_key not in self._prices:
            found = await self._client.v1.prices.list_async({"lookup_keys": [plan.lookup_key], "active": True})
            if not found.data:
                raise PlanNotAtStripe(plan.name)
            self._prices[plan.lookup_key] = found.data[0].id
        return self._prices[plan.lookup_key]

    async def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        """The object as Stripe has it now, for when its events cannot say."""
        v1 = self._client.v1
        resources = {
            "checkout_session": v1.checkout.sessions,
            "charge": v1.charges,
            "dispute": v1.disputes,
            "invoice": v1.invoices,
            "subscription": v1.subscriptions,
        }
        found = await resources[kind].retrieve_async(object_id)  # type: ignore[attr-defined]
        return found.to_dict()  # type: ignore[no-any-return]


def _line_item(plan: Plan, quantity: int, price_id: str | None) -> dict[str, Any]:
    if plan.mode == "subscription":
        return {"price": price_id}  # a metered price takes no quantity
    assert plan.price is not None
    return {
        "price_data": {
            "currency": plan.price.currency,
            "unit_amount": plan.price.amount_minor,
            "product_data": {"name": plan.product_name},
        },
        "quantity": quantity,
    }


def _options(idempotency_key: str | None, part: str) -> Any:
    return {"idempotency_key": f"{idempotency_key}:{part}"} if idempotency_key else None


def make_client(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=2)
