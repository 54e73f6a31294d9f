"""The one place that wires checkout: settings, Stripe client, catalog, routes."""

import asyncio
from pathlib import Path

from tollgate_shared.auth import KeysDirectory, Tokens
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service

from . import api, internal_api, metrics, repo
from .config import Settings
from .domain import Catalog
from .limits import Limits
from .stripe_gateway import StripeCheckout, make_client

SCHEMA = Path(__file__).resolve().parent / "schema"  # migrations, functions, grants
SPEC = ServiceSpec("checkout", "Tollgate checkout", publishes=(PAYMENTS_EVENTS,))
log = get_logger(__name__)


def build_app(settings: Settings) -> Service:
    runtime = Runtime(SPEC, settings, SCHEMA)
    client = make_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    gateway = StripeCheckout(client, settings.success_url, settings.cancel_url)
    directory = KeysDirectory(settings.keys_internal_url, settings.keys_token.get_secret_value())
    limits = Limits(settings.checkouts_per_address_per_hour, settings.checkouts_per_email_per_hour)
    deps = api.Deps(settings, runtime, Catalog.load(settings.plans_file), gateway, directory, limits)

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

    return service(
        runtime,
        public=[api.router(deps)],
        admin=[internal_api.router(deps, Tokens(settings.internal_tokens))],
        background=[watch_parked],
        on_stop=[directory.close],
    )
