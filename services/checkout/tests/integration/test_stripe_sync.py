"""stripe_sync against the Stripe emulator (stripe-mock checks every request against
Stripe's published API): it makes the account, changes nothing the second time, and
`--check` finds and reports drift without touching it. Plans, meters and the endpoint
are named for each test, so the stack's own catalog is left alone."""

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import stripe

from tollgate_checkout.domain import Catalog
from tollgate_checkout.machines import HANDLED
from tollgate_checkout.stripe_gateway import StripeCheckout, make_client
from tollgate_checkout.stripe_sync import Meter, run
from tollgate_devstack.stack import STRIPE_API_KEY


@pytest.fixture
def world(stack: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    plans = {
        "plans": {
            f"pack_{tag}": {
                "product_name": f"Pack {tag}",
                "mode": "payment",
                "credits": 100,
                "price": {"amount_minor": 500, "currency": "usd"},
            },
            f"metered_{tag}": {
                "product_name": f"Metered {tag}",
                "mode": "subscription",
                "price": {"amount_minor": 1, "currency": "usd"},
                "meter": f"calls_{tag}",
            },
        }
    }
    meters = {"meters": [{"name": f"calls_{tag}", "stripe_event_name": f"tg_calls_{tag}", "aggregation": "sum"}]}
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    (tmp_path / "meters.json").write_text(json.dumps(meters))
    return {
        "tag": tag,
        "dir": tmp_path,
        "client": make_client(STRIPE_API_KEY, stack["stripe"]),
        "meters": [Meter(f"calls_{tag}", f"tg_calls_{tag}", "sum")],
        "url": f"https://tollgate.example/{tag}/stripe/webhook",
        "stripe": stack["stripe"],
    }


async def sync(world: dict[str, Any], *, apply: bool = True) -> list[str]:
    catalog = Catalog.load(world["dir"] / "plans.json")
    changes = await run(world["client"], catalog, world["meters"], world["url"], apply=apply)
    return [str(c) for c in changes]


def check(world: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The command as an operator or the Helm hook runs it."""
    env = {
        "CHECKOUT_STRIPE_API_KEY": STRIPE_API_KEY,
        "CHECKOUT_STRIPE_API_BASE": world["stripe"],
        "CHECKOUT_PLANS_FILE": str(world["dir"] / "plans.json"),
        "CHECKOUT_METERS_FILE": str(world["dir"] / "meters.json"),
        "CHECKOUT_STRIPE_WEBHOOK_URL": world["url"],
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "tollgate_checkout.stripe_sync", "--check"], env=env, capture_output=True, text=True
    )


async def test_it_makes_the_account_then_changes_nothing(world: dict[str, Any]) -> None:
    tag = world["tag"]
    assert await sync(world) == [
        f"meter tg_calls_{tag}: missing, to create",
        f"product tollgate_metered_{tag}: missing, to create",
        f"price tollgate_metered_{tag}: missing, to create",
        f"product tollgate_pack_{tag}: missing, to create",
        f"price tollgate_pack_{tag}: missing, to create",
        f"webhook endpoint {world['url']}: missing, to create",
    ]
    assert await sync(world) == []
    assert check(world).returncode == 0

    v1 = world["client"].v1
    (price,) = (await v1.prices.list_async({"lookup_keys": [f"tollgate_metered_{tag}"], "active": True})).data
    meter = next(m for m in (await v1.billing.meters.list_async()).data if m.event_name == f"tg_calls_{tag}")
    assert (price.recurring.usage_type, price.recurring.meter, price.unit_amount) == ("metered", meter.id, 1)
    endpoint = next(e for e in (await v1.webhook_endpoints.list_async()).data if e.url == world["url"])
    assert sorted(endpoint.enabled_events) == sorted(HANDLED)

    # Checkout buys the metered plan with the Price the sync made, found by its lookup key.
    gateway = StripeCheckout(world["client"], "http://ok", "http://cancel")
    plan = Catalog.load(world["dir"] / "plans.json").get(f"metered_{tag}")
    assert await gateway._price_id(plan) == price.id


async def test_check_reports_drift_and_changes_nothing_until_synced(world: dict[str, Any]) -> None:
    tag = world["tag"]
    await sync(world)
    v1 = world["client"].v1
    await v1.products.update_async(f"tollgate_pack_{tag}", {"name": "renamed by hand"})
    endpoint = next(e for e in (await v1.webhook_endpoints.list_async()).data if e.url == world["url"])
    await v1.webhook_endpoints.update_async(endpoint.id, {"enabled_events": ["charge.refunded"]})

    checked = check(world)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"drift\tproduct tollgate_pack_{tag}: 'renamed by hand'" in checked.stdout
    assert f"drift\twebhook endpoint {world['url']}: events ['charge.refunded']" in checked.stdout
    assert (await v1.products.retrieve_async(f"tollgate_pack_{tag}")).name == "renamed by hand"  # untouched

    assert len(await sync(world)) == 2
    assert check(world).returncode == 0


async def test_a_new_price_takes_the_lookup_key_and_the_old_one_retires(world: dict[str, Any]) -> None:
    tag = world["tag"]
    await sync(world)
    v1 = world["client"].v1
    key = f"tollgate_pack_{tag}"
    (old,) = (await v1.prices.list_async({"lookup_keys": [key], "active": True})).data
    plans = json.loads((world["dir"] / "plans.json").read_text())
    plans["plans"][f"pack_{tag}"]["price"]["amount_minor"] = 700
    (world["dir"] / "plans.json").write_text(json.dumps(plans))

    assert await sync(world) == [f"price {key}: {old.id} differs, to replace"]
    (new,) = (await v1.prices.list_async({"lookup_keys": [key], "active": True})).data
    assert (new.unit_amount, new.id != old.id) == (700, True)
    retired = (await v1.prices.list_async({"active": False})).data
    assert old.id in {p.id for p in retired}


async def test_requests_stripe_would_refuse_are_refused(world: dict[str, Any]) -> None:
    """The emulator is only as good as stripe-mock's checks: a wrong parameter fails."""
    with pytest.raises(stripe.InvalidRequestError):
        await world["client"].v1.billing.meters.create_async({"display_name": "no event name"})  # type: ignore[typeddict-item]
