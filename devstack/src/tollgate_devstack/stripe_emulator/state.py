"""What the emulator remembers."""

import secrets
import time
from dataclasses import dataclass, field
from typing import Any


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


@dataclass
class State:
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Meter events as Stripe keeps them: one per identifier (duplicates are dropped).
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every meter event request, duplicates included: what was actually sent.
    meter_event_requests: list[dict[str, Any]] = field(default_factory=list)
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    idempotent: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # Tests inject failures: (path, text the request body must contain) -> HTTP statuses
    # to answer, in order, before succeeding. The match keeps one test's fault its own.
    faults: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # And latency: (path, match) -> seconds every matching request takes to answer.
    delays: dict[tuple[str, str], float] = field(default_factory=dict)
    # Stripe takes one meter event call at a time per customer and meter: the pairs
    # being answered now, and every call's span, so tests can see what overlapped.
    meter_calls_in_flight: set[tuple[str, str]] = field(default_factory=set)
    meter_calls: list[dict[str, Any]] = field(default_factory=list)
    # Money movements, for reconciliation: what a real account's lists would return.
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The latest version of every object an event carried: what GET returns for it.
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The account's catalog, as stripe_sync makes it.
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    billing_meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Cards saved by Checkout, and Billing Portal sessions.
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    billing_portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def take_fault(self, path: str, body: str) -> int | None:
        for (fault_path, match), statuses in self.faults.items():
            if fault_path == path and match in body and statuses:
                return statuses.pop(0)
        return None

    def delay_for(self, path: str, body: str) -> float:
        return max((d for (p, match), d in self.delays.items() if p == path and match in body), default=0.0)

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": new_id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "livemode": False,
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata", {}),
        }
        self.customers[customer["id"]] = customer
        return customer

    def create_session(self, params: dict[str, Any], public_url: str) -> dict[str, Any]:
        items = params.get("line_items", [])
        amount = sum(int(i.get("price_data", {}).get("unit_amount", 0)) * int(i.get("quantity", 1)) for i in items)
        currency = next((i["price_data"]["currency"] for i in items if "price_data" in i), "usd")
        sid = new_id("cs_test")
        customer = self.customers.get(params.get("customer", ""), {})
        session = {
            "id": sid,
            "object": "checkout.session",
            "created": int(time.time()),
            "livemode": False,
            "mode": params.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "customer": params.get("customer"),
            "customer_email": params.get("customer_email") or customer.get("email"),
            "customer_details": None,
            "metadata": params.get("metadata", {}),
            "amount_total": amount,
            "amount_subtotal": amount,
            "currency": currency,
            "payment_intent": None,
            "subscription": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{public_url}/checkout/{sid}",
            "line_items_requested": items,
            "payment_intent_metadata": params.get("payment_intent_data", {}).get("metadata", {}),
        }
        self.sessions[sid] = session
        return session

    def complete_session(self, sid: str, card: str = "4242") -> dict[str, Any]:
        """Paid with `card` (4242 succeeds later too; 0341 pays now and declines
        off-session later, as Stripe's test card 4000000000000341 does), which Checkout
        saves as the customer's default payment method."""
        session = self.sessions[sid]
        customer = self.customers.get(session["customer"] or "", {})
        if customer:
            pm = self.save_card(customer["id"], card)
            customer.setdefault("invoice_settings", {})["default_payment_method"] = pm["id"]
        session.update(
            {
                "status": "complete",
                "payment_status": "paid",
                "customer_details": {"email": session["customer_email"], "name": customer.get("name")},
            }
        )
        if session["mode"] == "subscription":
            session["subscription"] = new_id("sub")
        else:
            session["payment_intent"] = self._charge(session)["payment_intent"]
        return session

    def save_card(self, customer: str, card: str) -> dict[str, Any]:
        pm: dict[str, Any] = {
            "id": new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "card": {"brand": "visa", "last4": "0341" if card == "0341" else "4242", "exp_month": 12, "exp_year": 2034},
            "created": int(time.time()),
        }
        self.payment_methods[pm["id"]] = pm
        return pm

    def create_payment_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A PaymentIntent, confirmed at once if asked: off-session with the customer's saved
        card, it succeeds, or fails as Stripe answers a decline (402, the intent in the error)."""
        customer = self.customers.get(params.get("customer", ""))
        if customer is None:
            return 400, _error("No such customer")
        pm_id = params.get("payment_method") or customer.get("invoice_settings", {}).get("default_payment_method")
        pi = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "created": int(time.time()),
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": customer["id"],
            "payment_method": pm_id,
            "metadata": params.get("metadata", {}),
            "status": "requires_confirmation",
            "latest_charge": None,
            "last_payment_error": None,
        }
        self.payment_intents[pi["id"]] = pi
        if params.get("confirm") != "true":
            return 200, pi
        pm = self.payment_methods.get(pm_id or "")
        if pm is None or (params.get("off_session") == "true" and pm["card"]["last4"] == "0341"):
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
            }
            return 402, {
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                    "payment_intent": pi,
                }
            }
        self._charge_intent(pi)
        return 200, pi

    def _charge_intent(self, pi: dict[str, Any]) -> dict[str, Any]:
        ch = new_id("ch")
        pi.update(status="succeeded", latest_charge=ch)
        charge = {
            "id": ch,
            "object": "charge",
            "created": int(time.time()),
            "payment_intent": pi["id"],
            "paid": True,
            "amount": pi["amount"],
            "currency": pi["currency"],
            "customer": pi["customer"],
            "amount_refunded": 0,
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[ch] = charge
        return charge

    def create_billing_portal_session(self, params: dict[str, Any], public_url: str) -> tuple[int, dict[str, Any]]:
        if params.get("customer") not in self.customers:
            return 400, _error("No such customer")
        bps = new_id("bps")
        session = {
            "id": bps,
            "object": "billing_portal.session",
            "created": int(time.time()),
            "customer": params["customer"],
            "return_url": params.get("return_url"),
            "url": f"{public_url}/billing/{bps}",
            "livemode": False,
        }
        self.billing_portal_sessions[bps] = session
        return 200, session

    def _charge(self, session: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        pi, ch = new_id("pi"), new_id("ch")
        common = {"amount": session["amount_total"], "currency": session["currency"], "customer": session["customer"]}
        self.payment_intents[pi] = {
            "id": pi,
            "object": "payment_intent",
            "created": now,
            "status": "succeeded",
            "latest_charge": ch,
            "metadata": session.get("payment_intent_metadata", {}),
            **common,
        }
        charge = {
            "id": ch,
            "object": "charge",
            "created": now,
            "payment_intent": pi,
            "paid": True,
            "amount_refunded": 0,
            "refunded": False,
            "status": "succeeded",
            **common,
        }
        self.charges[ch] = charge
        return charge

    def charge_of(self, payment_intent: str) -> dict[str, Any] | None:
        return next((c for c in self.charges.values() if c["payment_intent"] == payment_intent), None)

    def create_refund(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A refund of part or all of a PaymentIntent's charge: (refund, updated charge)."""
        charge = self.charge_of(params.get("payment_intent", ""))
        if charge is None:
            return None
        amount = int(params.get("amount") or charge["amount"] - charge["amount_refunded"])
        if amount <= 0 or charge["amount_refunded"] + amount > charge["amount"]:
            return None
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "created": int(time.time()),
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return refund, charge

    def open_dispute(self, payment_intent: str, amount: int | None) -> dict[str, Any] | None:
        charge = self.charge_of(payment_intent)
        if charge is None:
            return None
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "created": int(time.time()),
            "amount": amount or charge["amount"],
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": payment_intent,
            "status": "needs_response",
            "reason": "fraudulent",
        }
        self.disputes[dispute["id"]] = dispute
        return dispute

    @staticmethod
    def listed(objects: dict[str, dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        """Objects in created[gte] .. created[lt], newest first, as Stripe lists them."""
        created = params.get("created") or {}
        lo, hi = int(created.get("gte", 0)), int(created.get("lt", 2**62))
        return sorted((o for o in objects.values() if lo <= o["created"] < hi), key=lambda o: -o["created"])

    def meters(self) -> list[dict[str, Any]]:
        """The meters created, and one per other event name seen (real Stripe would have
        refused those events; tests that never ran stripe_sync still see their usage)."""
        made = {m["event_name"] for m in self.billing_meters.values()}
        seen = sorted({e["event_name"] for e in self.meter_events.values()} - made)
        return [*self.billing_meters.values(), *(self._meter({"event_name": n, "display_name": n}) for n in seen)]

    @staticmethod
    def _meter(params: dict[str, Any]) -> dict[str, Any]:
        # The id carries the event name: event summaries find their events by it.
        return {
            "id": f"mtr_{params['event_name']}",
            "object": "billing.meter",
            "created": int(time.time()),
            "event_name": params["event_name"],
            "status": "active",
            "display_name": params.get("display_name", params["event_name"]),
            "livemode": False,
            "default_aggregation": params.get("default_aggregation", {"formula": "sum"}),
            "customer_mapping": params.get("customer_mapping", {}),
            "value_settings": params.get("value_settings", {}),
        }

    def create_meter(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if any(m["event_name"] == params["event_name"] for m in self.billing_meters.values()):
            return 400, _error("A meter with this event_name already exists.")
        meter = self._meter(params)
        self.billing_meters[meter["id"]] = meter
        return 200, meter

    def create_product(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pid = params.get("id") or new_id("prod")
        if pid in self.products:
            return 400, _error(f"Product already exists: {pid}")
        product = {
            "id": pid,
            "object": "product",
            "created": int(time.time()),
            "name": params["name"],
            "active": params.get("active", "true") != "false",
            "metadata": params.get("metadata", {}),
            "livemode": False,
        }
        self.products[pid] = product
        return 200, product

    def update(self, objects: dict[str, dict[str, Any]], oid: str, params: dict[str, Any]) -> dict[str, Any]:
        obj = objects[oid]
        for key, value in params.items():
            obj[key] = value not in ("false", False) if key in ("active", "disabled") else value
        if "disabled" in params:
            obj["status"] = "disabled" if obj.pop("disabled") else "enabled"
        return obj

    def create_price(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = params.get("lookup_key")
        holder = next((p for p in self.prices.values() if key and p["lookup_key"] == key), None)
        if holder is not None:
            if params.get("transfer_lookup_key") != "true":
                return 400, _error(f"A price with lookup key {key} already exists; pass transfer_lookup_key.")
            holder["lookup_key"] = None
        recurring = params.get("recurring")
        price = {
            "id": new_id("price"),
            "object": "price",
            "created": int(time.time()),
            "active": True,
            "currency": params["currency"],
            "unit_amount": int(params["unit_amount"]),
            "product": params["product"],
            "lookup_key": key,
            "metadata": params.get("metadata", {}),
            "type": "recurring" if recurring else "one_time",
            "recurring": None
            if not recurring
            else {
                "interval": recurring["interval"],
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": recurring.get("meter"),
            },
            "livemode": False,
        }
        self.prices[price["id"]] = price
        return 200, price

    def prices_by(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        keys = params.get("lookup_keys") or []
        active = params.get("active")
        return [
            p
            for p in self.prices.values()
            if (not keys or p["lookup_key"] in keys) and (active is None or p["active"] == (active == "true"))
        ]

    def create_webhook_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = {
            "id": new_id("we"),
            "object": "webhook_endpoint",
            "created": int(time.time()),
            "url": params["url"],
            "enabled_events": list(params.get("enabled_events", [])),
            "status": "enabled",
            "description": params.get("description"),
            "livemode": False,
        }
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint | {"secret": "whsec_" + secrets.token_hex(24)}  # shown once, as Stripe does

    def event_summary(self, meter_id: str, customer: str, start: int, end: int) -> dict[str, Any]:
        name = meter_id.removeprefix("mtr_")
        total = sum(
            float(e["payload"].get("value", 0))
            for e in self.meter_events.values()
            if e["event_name"] == name
            and e["payload"].get("stripe_customer_id") == customer
            and start <= e["timestamp"] < end
        )
        return {
            "id": f"mtrusg_{customer}_{start}",
            "object": "billing.meter_event_summary",
            "meter": meter_id,
            "aggregated_value": total,
            "start_time": start,
            "end_time": end,
            "livemode": False,
        }

    def invoice_preview(self, customer: str, unit_amount: int) -> dict[str, Any]:
        """Metered usage so far at `unit_amount` minor units per unit, as one line per meter."""
        totals: dict[str, float] = {}
        for e in self.meter_events.values():
            if e["payload"].get("stripe_customer_id") == customer:
                totals[e["event_name"]] = totals.get(e["event_name"], 0) + float(e["payload"].get("value", 0))
        lines = [
            {
                "object": "line_item",
                "description": name,
                "quantity": int(q),
                "amount": int(q) * unit_amount,
                "currency": "usd",
            }
            for name, q in sorted(totals.items())
        ]
        now = int(time.time())
        return {
            "object": "invoice",
            "customer": customer,
            "currency": "usd",
            "status": "draft",
            "amount_due": sum(line["amount"] for line in lines),
            "period_start": now - now % 2_592_000,
            "period_end": now,
            "lines": {"object": "list", "data": lines, "has_more": False},
        }

    def record_meter_event(self, params: dict[str, Any]) -> dict[str, Any]:
        identifier = params.get("identifier") or new_id("mev")
        event = {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "livemode": False,
            "event_name": params["event_name"],
            "identifier": identifier,
            "payload": params.get("payload", {}),
            "timestamp": int(params.get("timestamp") or time.time()),
        }
        self.meter_event_requests.append(event)
        # Stripe accepts a duplicate identifier and drops it in processing (uniqueness
        # is enforced over at least 24 hours): the first event stands.
        return self.meter_events.setdefault(identifier, event)


def _error(message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "message": message}}
