"""`python -m tollgate_checkout.stripe_sync [--check] [--secret-out FILE]`: make a Stripe
account what Tollgate needs, idempotently.

- a Product per plan (its id is `tollgate_<plan>`) and its Price, found by lookup key
  (`tollgate_<plan>`): a pack's one-time price, a metered plan's monthly price per unit
  of its Billing Meter. Prices cannot change at Stripe: a different one is created and
  takes the lookup key over, and the old one is deactivated;
- a Billing Meter per meter of usage-sync's meters file, found by event name;
- the webhook endpoint at CHECKOUT_STRIPE_WEBHOOK_URL, with exactly the event types
  checkout handles. Stripe shows a new endpoint's signing secret once: --secret-out
  writes it to a file (for CHECKOUT_STRIPE_WEBHOOK_SECRET), it is never printed.

Run again, it changes nothing. --check changes nothing either: it prints every
difference and exits 1 if there is one. Reads CHECKOUT_STRIPE_API_KEY,
CHECKOUT_STRIPE_API_BASE, CHECKOUT_PLANS_FILE, CHECKOUT_METERS_FILE,
CHECKOUT_STRIPE_WEBHOOK_URL.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import stripe
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tollgate_shared.settings import secret_validator

from .domain import DEFAULT_PLANS_PATH, Catalog, Plan
from .machines import HANDLED
from .stripe_gateway import make_client

Apply = Callable[[], Awaitable[Any]]


def _bundled_meters() -> Path:
    """usage-sync's meters file, installed beside checkout in Tollgate's image."""
    return Path(str(resources.files("tollgate_usage_sync") / "meters.json"))


class SyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_", extra="ignore", use_attribute_docstrings=True)

    stripe_api_key: SecretStr
    """Stripe's secret key (the sync writes Products, Prices, Meters, webhook endpoints)."""
    stripe_api_base: str = "https://api.stripe.com"
    """Stripe's API."""
    plans_file: Path = DEFAULT_PLANS_PATH
    """The plan catalog."""
    meters_file: Path | None = None
    """usage-sync's meters; unset, the bundled file."""
    stripe_webhook_url: str | None = None
    """Where Stripe sends events (checkout's `/stripe/webhook`); unset, no endpoint is managed."""

    _secrets = secret_validator("stripe_api_key")


@dataclass(frozen=True)
class Change:
    what: str
    apply: Apply

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True)
class Meter:
    name: str
    event_name: str
    formula: str  # sum or count: what Stripe's meters aggregate

    @property
    def display_name(self) -> str:
        return f"Tollgate {self.name.replace('_', ' ')}"


def load_meters(path: Path) -> list[Meter]:
    raw = json.loads(path.read_text())["meters"]
    return [Meter(m["name"], m["stripe_event_name"], m["aggregation"]) for m in raw]


class Sync:
    """What differs between the catalog and the account, each difference with its fix."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.v1 = client.v1
        self.meter_ids: dict[str, str] = {}  # meter name (the meters file's) -> Stripe id
        self.new_webhook_secret: str | None = None

    async def meters(self, wanted: list[Meter], *, apply: bool) -> list[Change]:
        found = {m.event_name: m for m in (await self.v1.billing.meters.list_async({"limit": 100})).data}
        changes = []
        for meter in wanted:
            have = found.get(meter.event_name)
            if have is None:
                params = {
                    "display_name": meter.display_name,
                    "event_name": meter.event_name,
                    "default_aggregation": {"formula": meter.formula},
                    "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                    "value_settings": {"event_payload_key": "value"},
                }

                async def create(params: dict[str, Any] = params, name: str = meter.name) -> None:
                    self.meter_ids[name] = (await self.v1.billing.meters.create_async(params)).id  # type: ignore[arg-type]

                changes.append(Change(f"meter {meter.event_name}: missing, to create", create))
                continue
            self.meter_ids[meter.name] = have.id
            if have.default_aggregation.formula != meter.formula:
                raise SystemExit(
                    f"meter {meter.event_name} aggregates by {have.default_aggregation.formula} at Stripe, "
                    f"{meter.formula} here: a meter's formula cannot change; deactivate it at Stripe and run again"
                )
            if have.display_name != meter.display_name:
                rename: Any = {"display_name": meter.display_name}

                async def update(mid: str = have.id, params: Any = rename) -> None:
                    await self.v1.billing.meters.update_async(mid, params)

                what = f"meter {meter.event_name}: named {have.display_name!r}, to rename {meter.display_name!r}"
                changes.append(Change(what, update))
        return changes

    async def product(self, plan: Plan) -> list[Change]:
        try:
            have = await self.v1.products.retrieve_async(plan.product_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
            made: Any = {"id": plan.product_id, "name": plan.product_name, "metadata": {"tollgate_plan": plan.name}}

            async def create() -> None:
                await self.v1.products.create_async(made)

            return [Change(f"product {plan.product_id}: missing, to create", create)]
        if have.name != plan.product_name or not have.active:
            fixed: Any = {"name": plan.product_name, "active": True}

            async def update() -> None:
                await self.v1.products.update_async(plan.product_id, fixed)

            what = f"product {plan.product_id}: {have.name!r} (active: {have.active}), to be {plan.product_name!r}"
            return [Change(what, update)]
        return []

    def price_params(self, plan: Plan) -> dict[str, Any]:
        assert plan.price is not None
        params: dict[str, Any] = {
            "product": plan.product_id,
            "currency": plan.price.currency,
            "unit_amount": plan.price.amount_minor,
            "lookup_key": plan.lookup_key,
            "metadata": {"tollgate_plan": plan.name},
        }
        if plan.mode == "subscription":
            params["recurring"] = {"interval": "month", "usage_type": "metered", "meter": self.meter_of(plan)}
        return params

    def meter_of(self, plan: Plan) -> str:
        """The Stripe id of the plan's meter (empty while the meter is still to be made)."""
        return self.meter_ids.get(plan.meter or "", "")

    async def price(self, plan: Plan) -> list[Change]:
        if plan.price is None:
            return []
        found = (await self.v1.prices.list_async({"lookup_keys": [plan.lookup_key], "active": True})).data
        have = found[0] if found else None
        wanted = self.price_params(plan)
        if have is not None and _same_price(have, wanted):
            return []

        async def replace() -> None:
            params: Any = self.price_params(plan) | {"transfer_lookup_key": True}
            await self.v1.prices.create_async(params)
            if have is not None:
                await self.v1.prices.update_async(have.id, {"active": False})

        what = "missing, to create" if have is None else f"{have.id} differs, to replace"
        return [Change(f"price {plan.lookup_key}: {what}", replace)]

    async def webhook(self, url: str, *, secret_out: Path | None) -> list[Change]:
        wanted = sorted(HANDLED)
        endpoints = (await self.v1.webhook_endpoints.list_async({"limit": 100})).data
        have = next((e for e in endpoints if e.url == url), None)
        if have is None:

            async def create() -> None:
                made = await self.v1.webhook_endpoints.create_async(
                    {"url": url, "enabled_events": wanted, "description": "Tollgate checkout"}  # type: ignore[typeddict-item]
                )
                self.new_webhook_secret = made.secret
                if secret_out is not None and made.secret:
                    secret_out.touch(mode=0o600)
                    secret_out.write_text(made.secret + "\n")

            return [Change(f"webhook endpoint {url}: missing, to create", create)]
        if sorted(have.enabled_events) != wanted or have.status != "enabled":
            events: Any = {"enabled_events": wanted, "disabled": False}

            async def update() -> None:
                await self.v1.webhook_endpoints.update_async(have.id, events)

            return [Change(f"webhook endpoint {url}: events {sorted(have.enabled_events)}, to be {wanted}", update)]
        return []


def _same_price(have: Any, wanted: dict[str, Any]) -> bool:
    if (have.product, have.currency, have.unit_amount) != (
        wanted["product"],
        wanted["currency"],
        wanted["unit_amount"],
    ):
        return False
    recurring = wanted.get("recurring")
    if recurring is None:
        return have.recurring is None
    return (
        have.recurring is not None
        and have.recurring.interval == recurring["interval"]
        and have.recurring.usage_type == "metered"
        and have.recurring.meter == recurring["meter"]
    )


async def run(
    client: stripe.StripeClient,
    catalog: Catalog,
    meters: list[Meter],
    webhook_url: str | None,
    *,
    apply: bool,
    secret_out: Path | None = None,
) -> list[Change]:
    """Every difference, in the order they must be fixed (meters before the prices on
    them); applied unless only checking."""
    sync = Sync(client)
    done: list[Change] = []
    changes = await sync.meters(meters, apply=apply)
    for change in changes:
        if apply:
            await change.apply()
    done += changes
    for plan in catalog:
        for step in (sync.product, sync.price):
            for change in await step(plan):
                if apply:
                    await change.apply()
                done.append(change)
    if webhook_url:
        for change in await sync.webhook(webhook_url, secret_out=secret_out):
            if apply:
                await change.apply()
            done.append(change)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_checkout.stripe_sync", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report differences, change nothing, exit 1 if any")
    parser.add_argument("--secret-out", type=Path, help="write a newly created endpoint's signing secret here")
    args = parser.parse_args(argv)
    s = SyncSettings()  # type: ignore[call-arg]
    client = make_client(s.stripe_api_key.get_secret_value(), s.stripe_api_base)
    meters = load_meters(s.meters_file or _bundled_meters())
    changes = asyncio.run(
        run(
            client,
            Catalog.load(s.plans_file),
            meters,
            s.stripe_webhook_url,
            apply=not args.check,
            secret_out=args.secret_out,
        )
    )
    for change in changes:
        print(f"{'drift' if args.check else 'changed'}\t{change}")
    print(f"stripe-sync: {len(changes)} {'difference(s)' if args.check else 'change(s)'}")
    return 1 if args.check and changes else 0


if __name__ == "__main__":
    sys.exit(main())
