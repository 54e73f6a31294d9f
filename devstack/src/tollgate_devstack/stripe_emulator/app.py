"""The emulator's HTTP surface: Stripe's /v1 API, plus /_emulator for tests and a checkout page."""

import asyncio
import html
import os
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import formdata, webhooks
from .state import State

# The metered plan's price in the emulator: one cent per unit.
METERED_UNIT_AMOUNT = 1
FORWARDED_HEADERS = ("authorization", "content-type", "stripe-version", "idempotency-key")


def stripe_error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)


def build_app(*, stripe_mock_url: str | None, public_url: str, webhook_url: str, webhook_secret: str) -> Starlette:
    state = State()
    mock = httpx.AsyncClient(base_url=stripe_mock_url, timeout=10) if stripe_mock_url else None

    async def validate_with_stripe_mock(request: Request, body: bytes) -> Response | None:
        """Stripe-mock checks the request against Stripe's OpenAPI spec; its refusal is ours."""
        if mock is None:
            return None
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        headers.pop("idempotency-key", None)  # stripe-mock would replay, hiding validation
        r = await mock.request(
            request.method, request.url.path, params=request.query_params, content=body, headers=headers
        )
        state.requests[-1]["stripe_mock_status"] = r.status_code
        if r.status_code >= 400:
            return Response(r.content, status_code=r.status_code, media_type="application/json")
        return None

    refunds_to_send: list[dict[str, Any]] = []

    async def v1(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        state.requests.append({"method": request.method, "path": path, "body": body.decode()})
        if not request.headers.get("authorization", "").startswith("Bearer sk_"):
            return stripe_error(401, "Invalid API Key provided", "authentication_error")
        refused = await validate_with_stripe_mock(request, body)
        if refused is not None:
            return refused
        if (fault := state.take_fault(path, body.decode())) is not None:
            return stripe_error(fault, "injected fault", "api_error")
        if request.method == "POST" and path == "/v1/billing/meter_events":
            return await one_meter_call_at_a_time(request, path, body)
        return await answer(request, path, body)

    async def one_meter_call_at_a_time(request: Request, path: str, body: bytes) -> Response:
        """Stripe's rule for meter events: one concurrent call per customer per meter; a
        second is refused with 429, as Stripe's rate limiter does."""
        params = formdata.decode(body.decode())
        pair = (str(params.get("payload", {}).get("stripe_customer_id")), str(params.get("event_name")))
        call = {"customer": pair[0], "event_name": pair[1], "received_at": time.time()}
        state.meter_calls.append(call)
        if pair in state.meter_calls_in_flight:
            call.update(status=429, answered_at=time.time())
            return JSONResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "rate_limit",
                        "message": "Too many concurrent requests for this customer and meter.",
                    }
                },
                status_code=429,
            )
        state.meter_calls_in_flight.add(pair)
        try:
            response = await answer(request, path, body)
        finally:
            state.meter_calls_in_flight.discard(pair)
        call.update(status=response.status_code, answered_at=time.time())
        return response

    async def answer(request: Request, path: str, body: bytes) -> Response:
        if delay := state.delay_for(path, body.decode()):
            await asyncio.sleep(delay)
        idem = request.headers.get("idempotency-key")
        if idem and (path, idem) in state.idempotent:
            status, cached = state.idempotent[(path, idem)]
            return JSONResponse(cached, status_code=status, headers={"Idempotent-Replayed": "true"})
        query = str(request.query_params) if request.method == "GET" else body.decode()
        status, payload = handle(request.method, path, formdata.decode(query))
        while refunds_to_send:
            charge = refunds_to_send.pop(0)
            await webhooks.deliver(state, webhook_url, webhook_secret, webhooks.event("charge.refunded", dict(charge)))
        if idem and status < 500:
            state.idempotent[(path, idem)] = (status, payload)
        return JSONResponse(payload, status_code=status)

    def handle(method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")[1:]
        match method, parts:
            case "GET", ["billing", "meters"]:
                return 200, {"object": "list", "data": state.meters(), "has_more": False, "url": path}
            case "POST", ["billing", "meters"]:
                return state.create_meter(params)
            case "POST", ["billing", "meters", mid] if mid in state.billing_meters:
                return 200, state.update(state.billing_meters, mid, params)
            case "POST", ["products"]:
                return state.create_product(params)
            case "GET", ["products", pid] if pid in state.products:
                return 200, state.products[pid]
            case "POST", ["products", pid] if pid in state.products:
                return 200, state.update(state.products, pid, params)
            case "GET", ["prices"]:
                return 200, {"object": "list", "data": state.prices_by(params), "has_more": False, "url": path}
            case "POST", ["prices"]:
                return state.create_price(params)
            case "POST", ["prices", pid] if pid in state.prices:
                return 200, state.update(state.prices, pid, params)
            case "GET", ["webhook_endpoints"]:
                data = list(state.webhook_endpoints.values())
                return 200, {"object": "list", "data": data, "has_more": False, "url": path}
            case "POST", ["webhook_endpoints"]:
                return 200, state.create_webhook_endpoint(params)
            case "POST", ["webhook_endpoints", wid] if wid in state.webhook_endpoints:
                return 200, state.update(state.webhook_endpoints, wid, params)
            case "POST", ["payment_intents"]:
                status, answer = state.create_payment_intent(params)
                intent = answer if status == 200 else answer.get("error", {}).get("payment_intent")
                if intent and intent["status"] in ("succeeded", "requires_payment_method"):
                    later(intent_event(intent))
                return status, answer
            case "GET", ["payment_intents", pid] if pid in state.payment_intents:
                return 200, state.payment_intents[pid]
            case "GET", ["payment_methods", pid] if pid in state.payment_methods:
                return 200, state.payment_methods[pid]
            case "POST", ["billing_portal", "sessions"]:
                return state.create_billing_portal_session(params, public_url)
            case "GET", ["billing", "meters", meter_id, "event_summaries"]:
                summary = state.event_summary(
                    meter_id, params["customer"], int(params["start_time"]), int(params["end_time"])
                )
                return 200, {"object": "list", "data": [summary], "has_more": False, "url": path}
            case "POST", ["invoices", "create_preview"]:
                if not any(
                    e["payload"].get("stripe_customer_id") == params.get("customer")
                    for e in state.meter_events.values()
                ):
                    return 400, {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "invoice_upcoming_none",
                            "message": "No upcoming invoices for customer",
                        }
                    }
                return 200, state.invoice_preview(params["customer"], METERED_UNIT_AMOUNT)
            case "POST", ["customers"]:
                return 200, state.create_customer(params)
            case "GET", ["customers", cid] if cid in state.customers:
                return 200, state.customers[cid]
            case "POST", ["checkout", "sessions"]:
                return 200, public_session(state.create_session(params, public_url))
            case "GET", ["checkout", "sessions", sid] if sid in state.sessions:
                return 200, public_session(state.sessions[sid])
            case "POST", ["billing", "meter_events"]:
                return 200, state.record_meter_event(params)
            case "GET", [("disputes" | "charges" | "invoices" | "subscriptions"), oid] if oid in state.objects:
                return 200, state.objects[oid]
            case "GET", ["disputes", oid] if oid in state.disputes:
                return 200, state.disputes[oid]
            case "GET", ["charges", oid] if oid in state.charges:
                return 200, state.charges[oid]
            case "GET", [("payment_intents" | "refunds" | "disputes" | "charges") as kind]:
                data = state.listed(getattr(state, kind), params)
                return 200, {"object": "list", "data": data, "has_more": False, "url": path}
            case "POST", ["refunds"]:
                made = state.create_refund(params)
                if made is None:
                    return 400, {"error": {"type": "invalid_request_error", "message": "nothing to refund"}}
                refund, charge = made
                refunds_to_send.append(charge)
                return 200, refund
        return 404, {"error": {"type": "invalid_request_error", "message": f"No such resource: {path}"}}

    def intent_event(intent: dict[str, Any]) -> dict[str, Any]:
        kind = "payment_intent.succeeded" if intent["status"] == "succeeded" else "payment_intent.payment_failed"
        return webhooks.event(kind, dict(intent))

    def later(evt: dict[str, Any]) -> None:
        """Deliver after the API call answered, as Stripe's webhooks arrive (or before it
        answered: a receiver must not care which)."""

        async def send() -> None:
            await asyncio.sleep(0.05)
            await webhooks.deliver(state, webhook_url, webhook_secret, evt)

        pending.add(task := asyncio.create_task(send()))
        task.add_done_callback(pending.discard)

    pending: set[asyncio.Task[None]] = set()

    async def complete(sid: str, card: str = "4242") -> dict[str, Any]:
        session = state.complete_session(sid, card)
        evt = webhooks.event("checkout.session.completed", public_session(session))
        return await webhooks.deliver(state, webhook_url, webhook_secret, evt)

    async def complete_api(request: Request) -> Response:
        sid = request.path_params["sid"]
        if sid not in state.sessions:
            return stripe_error(404, f"No such checkout session: {sid}")
        if state.sessions[sid]["status"] == "complete":
            return stripe_error(400, "session already completed")
        body = await request.json() if await request.body() else {}
        return JSONResponse(await complete(sid, str(body.get("card", "4242"))))

    async def outside_payment(request: Request) -> Response:
        """A payment made outside Tollgate ({"customer", "amount", "currency"?}), as from
        Stripe's dashboard: charged to the saved card, then its webhook."""
        body = await request.json()
        params = {"customer": body["customer"], "amount": str(body["amount"]), "currency": body.get("currency", "usd")}
        status, intent = state.create_payment_intent(params | {"confirm": "true"})
        if status != 200:
            return JSONResponse(intent, status_code=status)
        delivery = await webhooks.deliver(state, webhook_url, webhook_secret, intent_event(intent))
        return JSONResponse({"payment_intent": intent, "delivery": delivery})

    async def billing_portal(request: Request) -> Response:
        s = state.billing_portal_sessions.get(request.path_params["bps"])
        if s is None:
            return HTMLResponse("<h1>No such billing portal session</h1>", status_code=404)
        cards = [
            f"<li>{html.escape(pm['card']['brand'])} ending {html.escape(pm['card']['last4'])}</li>"
            for pm in state.payment_methods.values()
            if pm["customer"] == s["customer"]
        ]
        back = html.escape(s["return_url"] or "/")
        return HTMLResponse(
            '<!doctype html><html lang="en"><title>Billing portal (Stripe emulator)</title>'
            "<main><h1>Billing portal</h1><h2>Payment methods</h2>"
            f'<ul>{"".join(cards) or "<li>none</li>"}</ul><p><a href="{back}">Return to Tollgate</a></p></main></html>'
        )

    async def send_event(request: Request) -> Response:
        """Sign and deliver an event of any type ({"type", "object", "created"?}); the
        object becomes what GET returns for it, as Stripe's current state."""
        body = await request.json()
        obj = body.get("object", {})
        evt = webhooks.event(body["type"], obj, created=body.get("created"))
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            state.objects[obj["id"]] = obj
        return JSONResponse({"event": evt, "delivery": await webhooks.deliver(state, webhook_url, webhook_secret, evt)})

    async def put_object(request: Request) -> Response:
        """Set what GET returns for an object, without any event: Stripe's state moved on."""
        obj = await request.json()
        state.objects[obj["id"]] = obj
        return JSONResponse(obj)

    async def dispute(request: Request) -> Response:
        """Open a dispute on a PaymentIntent ({"payment_intent", "amount"?}) or close one
        ({"dispute", "status": "won"|"lost"}); the matching webhook is sent either way."""
        body = await request.json()
        if "dispute" in body:
            d = state.disputes.get(body["dispute"])
            if d is None or body.get("status") not in ("won", "lost"):
                return stripe_error(400, "unknown dispute or status")
            d["status"] = body["status"]
            evt = webhooks.event("charge.dispute.closed", dict(d))
        else:
            d = state.open_dispute(body.get("payment_intent", ""), body.get("amount"))
            if d is None:
                return stripe_error(404, "no charge for that payment_intent")
            evt = webhooks.event("charge.dispute.created", dict(d))
        delivery = await webhooks.deliver(state, webhook_url, webhook_secret, evt)
        return JSONResponse({"dispute": d, "delivery": delivery})

    async def checkout_page(request: Request) -> Response:
        sid = request.path_params["sid"]
        s = state.sessions.get(sid)
        if s is None:
            return HTMLResponse("<h1>No such checkout session</h1>", status_code=404)
        plan = html.escape(str(s["metadata"].get("plan", "")))
        amount = f"{s['amount_total'] / 100:.2f} {s['currency'].upper()}" if s["amount_total"] else "metered"
        back = html.escape(s.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", sid)
        button = (
            f'<p>Paid. Your key is on its way by email.</p><p><a href="{back}">Continue</a></p>'
            if s["status"] == "complete"
            else f'<form method="post" action="/checkout/{sid}/pay"><button type="submit">Pay</button></form>'
            f'<form method="post" action="/checkout/{sid}/pay?card=0341">'
            '<button type="submit">Pay with a card that declines off-session later</button></form>'
        )
        return HTMLResponse(
            '<!doctype html><html lang="en"><meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Tollgate test checkout</title><main><h1>Stripe emulator checkout</h1>"
            f"<p>Plan: <b>{plan}</b> &middot; {amount} &middot; {html.escape(s['customer_email'] or '')}</p>"
            f"{button}</main></html>"
        )

    async def pay(request: Request) -> Response:
        sid = request.path_params["sid"]
        if sid in state.sessions and state.sessions[sid]["status"] != "complete":
            await complete(sid, request.query_params.get("card", "4242"))
        return await checkout_page(request)

    async def meter_events(_request: Request) -> Response:
        return JSONResponse(
            {
                "events": list(state.meter_events.values()),
                "requests": state.meter_event_requests,
                "calls": state.meter_calls,
            }
        )

    async def debug(request: Request) -> Response:
        what = request.path_params["what"]
        data = {
            "requests": state.requests,
            "webhooks": state.webhook_deliveries,
            "sessions": list(state.sessions.values()),
        }.get(what)
        return JSONResponse(data) if data is not None else stripe_error(404, "unknown")

    async def faults(request: Request) -> Response:
        body = await request.json()
        where = (body["path"], body.get("match", ""))
        if "statuses" in body:
            state.faults[where] = list(body["statuses"])
        if "delay_ms" in body:
            state.delays[where] = float(body["delay_ms"]) / 1000
        return JSONResponse({"ok": True})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/{rest:path}", v1, methods=["GET", "POST", "DELETE"]),
            Route("/checkout/{sid}", checkout_page, methods=["GET"]),
            Route("/checkout/{sid}/pay", pay, methods=["POST"]),
            Route("/billing/{bps}", billing_portal, methods=["GET"]),
            Route("/_emulator/payments", outside_payment, methods=["POST"]),
            Route("/_emulator/checkout/sessions/{sid}/complete", complete_api, methods=["POST"]),
            Route("/_emulator/events", send_event, methods=["POST"]),
            Route("/_emulator/objects", put_object, methods=["POST"]),
            Route("/_emulator/disputes", dispute, methods=["POST"]),
            Route("/_emulator/meter_events", meter_events, methods=["GET"]),
            Route("/_emulator/faults", faults, methods=["POST"]),
            Route("/_emulator/{what}", debug, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


def public_session(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k not in ("line_items_requested", "payment_intent_metadata")}


def main() -> None:
    import uvicorn

    app = build_app(
        stripe_mock_url=os.environ.get("STRIPE_EMULATOR_STRIPE_MOCK_URL") or None,
        public_url=os.environ["STRIPE_EMULATOR_PUBLIC_URL"],
        webhook_url=os.environ["STRIPE_EMULATOR_WEBHOOK_URL"],
        webhook_secret=os.environ["STRIPE_EMULATOR_WEBHOOK_SECRET"],
    )
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("STRIPE_EMULATOR_PORT", "12112")), log_level="warning")
