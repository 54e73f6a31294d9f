"""Stripe, as checkout uses it, through the official SDK: customers, Checkout Sessions,
off-session charges of the card on file, and Billing Portal sessions."""

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


class Declined(Exception):
    """The card on file was declined (or there is none)."""

    def __init__(self, code: str, payment_intent_id: str | None) -> None:
        super().__init__(code)
        self.code, self.payment_intent_id = code, payment_intent_id


@dataclass(frozen=True)
class SavedCard:
    brand: str
    last4: str


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
        return_url: str | None = None,
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
            "success_url": return_url or self._success_url,
            "cancel_url": return_url or self._cancel_url,
            "metadata": {"plan": plan.name, "quantity": str(quantity)},
            "line_items": [
                _line_item(plan, quantity, await self._price_id(plan) if plan.mode == "subscription" else None)
            ],
        }
        if plan.mode == "payment":
            # The card is kept for top-ups and auto-recharge; the PaymentIntent says it is
            # Checkout's (its session's events are what count), not a payment made outside.
            params["payment_intent_data"] = {
                "setup_future_usage": "off_session",
                "metadata": {"tollgate_source": "checkout"},
            }
        session = await self._client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            _options(idempotency_key, "session"),
        )
        return CreatedSession(id=session.id, url=session.url or "", customer=customer.id, mode=plan.mode)

    async def create_customer(self, email: str, name: str, idempotency_key: str) -> str:
        """A Tollgate account: a Stripe customer marked as Tollgate's."""
        params: Any = {"email": email, "name": name, "metadata": {"source": "tollgate"}}
        customer = await self._client.v1.customers.create_async(params, {"idempotency_key": idempotency_key})
        return customer.id

    async def charge_off_session(self, account_id: str, amount_minor: int, currency: str, top_up_id: str) -> str:
        """Charge the customer's saved card now, without them; the PaymentIntent's id, or
        Declined. The top-up's id is the idempotency key: a retry charges once."""
        params: Any = {
            "amount": amount_minor,
            "currency": currency,
            "customer": account_id,
            "off_session": True,
            "confirm": True,
            "metadata": {"tollgate_top_up": top_up_id},
        }
        card = await self.saved_card_id(account_id)
        if card is None:
            raise Declined("no_payment_method", None)
        params["payment_method"] = card
        try:
            intent = await self._client.v1.payment_intents.create_async(params, {"idempotency_key": top_up_id})
        except stripe.CardError as exc:
            failed: Any = exc.error.payment_intent if exc.error else None
            raise Declined(exc.code or "card_declined", failed["id"] if failed else None) from None
        if intent.status != "succeeded":
            raise Declined(intent.status, intent.id)
        return intent.id

    async def saved_card_id(self, account_id: str) -> str | None:
        customer = await self._client.v1.customers.retrieve_async(account_id)
        settings = getattr(customer, "invoice_settings", None)
        found = getattr(settings, "default_payment_method", None) if settings else None
        return found if isinstance(found, str) else getattr(found, "id", None)

    async def saved_card(self, account_id: str) -> SavedCard | None:
        card_id = await self.saved_card_id(account_id)
        if card_id is None:
            return None
        pm = await self._client.v1.payment_methods.retrieve_async(card_id)
        return SavedCard(pm.card.brand, pm.card.last4) if pm.card else None

    async def billing_portal(self, account_id: str, return_url: str) -> str:
        """Stripe's own page for the customer's invoices and payment methods."""
        params: Any = {"customer": account_id, "return_url": return_url}
        return (await self._client.v1.billing_portal.sessions.create_async(params)).url

    async def is_outside_payment(self, intent: dict[str, Any]) -> bool:
        """A payment for a Tollgate customer that no Tollgate flow made: not one of an
        invoice (a subscription's), which Stripe links through InvoicePayments."""
        customer = await self._client.v1.customers.retrieve_async(intent["customer"])
        marked: dict[str, Any] = customer.to_dict().get("metadata") or {}
        if marked.get("source") != "tollgate":
            return False
        try:
            params: Any = {"payment": {"type": "payment_intent", "payment_intent": intent["id"]}, "limit": 1}
            paid = await self._client.v1.invoice_payments.list_async(params)
        except stripe.InvalidRequestError:
            return True  # no InvoicePayments where Stripe has none to list
        return not paid.data

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
