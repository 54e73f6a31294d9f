"""The one place that wires checkout: settings, Stripe client, catalog, routes."""

from pathlib import Path

from fastapi import FastAPI

from tollgate_shared.runtime import Runtime, service_app

from . import api
from .config import Settings
from .domain import Catalog
from .stripe_gateway import StripeCheckout, make_client
from .wiring import Deps

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("checkout", "checkout", settings, MIGRATIONS)
    client = make_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    gateway = StripeCheckout(client, settings.success_url, settings.cancel_url)
    deps = Deps(settings, runtime, Catalog.load(settings.plans_file), gateway)
    return service_app(runtime, api.router(deps))
