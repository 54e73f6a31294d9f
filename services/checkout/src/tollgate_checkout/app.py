"""The one place that wires checkout: settings, Stripe client, catalog, routes."""

import asyncio
from pathlib import Path

from fastapi import FastAPI

from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, ServiceSpec, service_app

from . import api, metrics, repo
from .config import Settings
from .domain import Catalog
from .stripe_gateway import StripeCheckout, make_client

SERVICE_DIR = Path(__file__).resolve().parents[2]
SPEC = ServiceSpec("checkout", "Tollgate checkout", publishes=(PAYMENTS_EVENTS,))
log = get_logger(__name__)


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime(SPEC, settings, SERVICE_DIR)
    client = make_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    gateway = StripeCheckout(client, settings.success_url, settings.cancel_url)
    deps = api.Deps(settings, runtime, Catalog.load(settings.plans_file), gateway)

    async def watch_parked() -> None:
        """/metrics learns how many facts wait for a dependency, and for how long."""
        while True:
            try:
                async with runtime.pool.acquire() as conn:
                    waiting, oldest = await repo.parked_summary(conn)
                metrics.PARKED.set(waiting)
                metrics.OLDEST_PARKED.set(oldest)
            except Exception:
                log.exception("could not read the parked facts")
            await asyncio.sleep(15)

    return service_app(runtime, api.router(deps), background=[watch_parked])
