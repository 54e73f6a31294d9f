"""The ledger's HTTP API on the running stack: a purchase through Stripe and Kafka, then
transfers, holds, grants and the finance endpoints; bad input changes nothing."""

import csv
import io
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tollgate_devstack.demo import Demo

from .helpers import rows


@pytest.fixture
def admin(stack: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack["ledger_admin"], headers={"Authorization": f"Bearer {stack['operator_token']}"}, timeout=15
    )


async def open_account(admin: httpx.AsyncClient, kind: str, **extra: Any) -> str:
    account = f"{kind}:{secrets.token_hex(4)}"
    body = {"id": account, "owner": "e2e", "type": "liability", "asset": "EUR/2"} | extra
    r = await admin.post("/v1/ledger-accounts", json=body)
    assert r.status_code == 201, r.text
    return account


async def test_a_paid_pack_shows_in_balances_statement_export_and_trial_balance(
    demo: Demo, admin: httpx.AsyncClient
) -> None:
    session = await demo.buy("professional", f"fin+{secrets.token_hex(3)}@example.com")
    await demo.pay(session["id"])
    account = session["customer"]
    balance = await demo.balance_equal(account, 10_000)
    assert balance["available"] == balance["available_conservative"] == 10_000

    r = await admin.get(
        f"/v1/ledger-accounts/{balance['ledger_account']}/statement",
        params={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
    )
    assert r.status_code == 200
    assert [(x["kind"], x["amount"]) for x in r.json()["lines"]] == [("purchase", 10_000)]

    r = await admin.get("/v1/exports/journal", params={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    mine = [x for x in rows if x["account_id"] == balance["ledger_account"]]
    assert [(x["kind"], x["unit"], x["amount"], x["amount_minor"]) for x in mine] == [
        ("purchase", "CALLS", "-10000", "-10000")  # a credit: the customer holds 10,000 calls
    ]
    r = await admin.get(
        "/v1/exports/journal",
        params={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "format": "parquet"},
    )
    assert pq.read_table(io.BytesIO(r.content)).num_rows == len(rows)

    r = await admin.get("/v1/trial-balance")
    assert r.status_code == 200 and r.json()["balanced"] is True
    line = next(x for x in r.json()["accounts"] if x["account"] == balance["ledger_account"])
    assert (line["opening"], line["credits"], line["closing"]) == (0, 10_000, -10_000)
    assert line["name"] == f"Call credits of {account}"
    r = await admin.get("/v1/revenue", params={"period": datetime.now(UTC).strftime("%Y-%m")})
    assert r.status_code == 200 and r.json()["tied"] is True, r.json()
    assert (await admin.get("/v1/verify")).json() == {"ok": True, "problems": []}


async def test_two_phase_transfer_over_http(admin: httpx.AsyncClient) -> None:
    funding = await open_account(admin, "funding")
    wallet = await open_account(admin, "wallet", flags=["no_overdraft"])
    shop = await open_account(admin, "shop")
    assert (
        await admin.post(
            "/v1/transfers",
            json={"id": f"seed-{wallet}", "debit_account": funding, "credit_account": wallet, "amount": 1_000},
        )
    ).status_code == 201
    hold = {"id": f"hold-{wallet}", "debit_account": wallet, "credit_account": shop, "amount": 600, "pending": True}
    assert (await admin.post("/v1/transfers", json=hold)).status_code == 201
    assert (await admin.post("/v1/transfers", json=hold)).status_code == 200  # same id: no-op
    w = (await admin.get(f"/v1/ledger-accounts/{wallet}")).json()
    assert (w["current"], w["pending"], w["available"]) == (1_000, -600, 400)

    over = {"id": f"over-{wallet}", "debit_account": wallet, "credit_account": shop, "amount": 401}
    r = await admin.post("/v1/transfers", json=over)
    assert r.status_code == 422 and r.json()["error"]["code"] == "overdraft"

    r = await admin.post(f"/v1/transfers/hold-{wallet}/post", json={"amount": 250})
    assert r.status_code == 200
    w = (await admin.get(f"/v1/ledger-accounts/{wallet}")).json()
    assert (w["current"], w["pending"], w["available"]) == (750, 0, 750)
    r = await admin.post(f"/v1/transfers/hold-{wallet}/void")
    assert r.status_code == 409 and r.json()["error"]["code"] == "transfer_posted"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "a-{u}", "credit_account": "b-{u}", "amount": -5},
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "a-{u}", "credit_account": "b-{u}", "amount": 10**16},
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "nope-{u}", "credit_account": "nada-{u}", "amount": 5},
            404,
            "account_not_found",
        ),
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "a-{u}", "credit_account": "b-{u}", "amount": 5, "surprise": 1},
            422,
            "invalid_request",
        ),
        ("/v1/transfers/nope-{u}/post", {}, 404, "transfer_not_found"),
        (
            "/v1/ledger-accounts",
            {"id": "bad id! {u}", "owner": "o", "type": "asset", "asset": "EUR/2"},
            422,
            "invalid_request",
        ),
        (
            "/v1/ledger-accounts",
            {"id": "ok-{u}", "owner": "o", "type": "cash", "asset": "EUR/2"},
            422,
            "invalid_request",
        ),
        ("/v1/periods/2026-13/close", None, 422, "invalid_request"),
        (  # a NUL reached PostgreSQL once, and answered 500
            "/v1/ledger-accounts",
            {"id": "nul-{u}", "owner": "o\u0000{u}", "type": "asset", "asset": "EUR/2"},
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "a\u0000{u}", "credit_account": "b-{u}", "amount": 5},
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers",
            {
                "id": "x-{u}",
                "debit_account": "a-{u}",
                "credit_account": "b-{u}",
                "amount": 5,
                "source_ref": "\u001b[2J",
            },
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers",
            {"id": "x-{u}", "debit_account": "a-{u}" + "a" * 300, "credit_account": "b-{u}", "amount": 5},
            422,
            "invalid_request",
        ),
    ],
)
async def test_bad_input_is_refused_clearly_and_changes_nothing(
    stack: dict[str, Any], admin: httpx.AsyncClient, path: str, body: dict[str, Any] | None, status: int, code: str
) -> None:
    u = secrets.token_hex(6)  # every id the request names carries it, so anything it wrote would too
    named = json.loads(json.dumps(body).replace("{u}", u)) if body is not None else None
    r = await admin.post(path.replace("{u}", u), json=named)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    for table in ("accounts", "journal_transactions", "pending_transfers", "outbox"):
        written = await rows(stack, "ledger", f"SELECT 1 FROM {table} t WHERE t::text LIKE $1", f"%{u}%")
        assert written == [], table


async def test_finance_endpoints_need_an_operator_token(stack: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=stack["ledger_admin"]) as http:
        paths = ("/v1/trial-balance", "/v1/verify", "/v1/revenue?period=2026-11", "/v1/exports/journal?period=2026-11")
        for path in paths:
            r = await http.get(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, path
            # A service's token opens the customer reads, not finance.
            r = await http.get(path, headers={"Authorization": f"Bearer {stack['portal_token']}"})
            assert r.status_code == 401, path


async def test_corrections_over_http_adjust_reverse_and_close(demo: Demo, admin: httpx.AsyncClient) -> None:
    session = await demo.buy("professional", f"adj+{secrets.token_hex(3)}@example.com")
    await demo.pay(session["id"])
    account = session["customer"]
    await demo.balance_equal(account, 10_000)
    body = {"adjustment_id": f"adj-{account}", "units": -300, "reason": "clawback of a test grant"}
    r = await admin.post(f"/v1/accounts/{account}/adjustments", json=body)
    assert r.status_code == 201 and r.json()["current"] == 9_700
    assert (await admin.post(f"/v1/accounts/{account}/adjustments", json=body)).status_code == 200

    a, b = await open_account(admin, "a"), await open_account(admin, "b")
    await admin.post("/v1/transfers", json={"id": f"t-{a}", "debit_account": a, "credit_account": b, "amount": 9})
    export = (await admin.get("/v1/exports/journal", params={"period": demo_period()})).text
    tx_id = next(
        row["tx_id"] for row in csv.DictReader(io.StringIO(export)) if row["idempotency_key"] == f"transfer:t-{a}"
    )
    r = await admin.post(f"/v1/journal/{tx_id}/reverse", json={"reason": "sent to the wrong account"})
    assert r.status_code == 201
    assert (await admin.get(f"/v1/ledger-accounts/{a}")).json()["current"] == 0
    r = await admin.post(f"/v1/ledger-accounts/{a}/close")
    assert r.status_code == 200 and "closed" in r.json()["flags"]
    r = await admin.post(
        "/v1/transfers", json={"id": f"late-{a}", "debit_account": a, "credit_account": b, "amount": 1}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "account_closed"


def demo_period() -> str:
    now = datetime.now(UTC)
    return f"{now.year:04d}-{now.month:02d}"
