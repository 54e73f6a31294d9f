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

    def take_fault(self, path: str, body: str) -> int | None:
        for (fault_path, match), statuses in self.faults.items():
            if fault_path == path and match in body and statuses:
                return statuses.pop(0)
        return None

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
        }
        self.sessions[sid] = session
        return session

    def complete_session(self, sid: str) -> dict[str, Any]:
        session = self.sessions[sid]
        customer = self.customers.get(session["customer"] or "", {})
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
            session["payment_intent"] = new_id("pi")
        return session

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
