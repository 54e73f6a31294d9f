"""The one place that wires usage-sync."""

import asyncio
from datetime import timedelta
from pathlib import Path

import stripe

from tollgate_shared.auth import KeysDirectory, Tokens, customer, staff
from tollgate_shared.contracts.topics import USAGE_REPORTED
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service

from . import api, consumers, metrics
from .config import Settings, StripeSettings
from .domain import Windows, load_meters
from .ratelimit import TokenBucket
from .reporter import Reporter

SCHEMA = Path(__file__).resolve().parent / "schema"  # migrations, functions, grants
PUBLISHES = (USAGE_REPORTED,)
SPEC = ServiceSpec("usage-sync", "Tollgate usage-sync", subscriptions=consumers.SUBSCRIPTIONS, publishes=PUBLISHES)
log = get_logger(__name__)


def stripe_client(settings: StripeSettings) -> stripe.StripeClient:
    # Retries are the reporter's job (it keeps state across them), not the SDK's.
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )


def consumer_deps(settings: Settings) -> consumers.Deps:
    windows = Windows(timedelta(seconds=settings.window_seconds), settings.grace_seconds)
    return consumers.Deps(load_meters(settings.meters_file), windows)


def build_app(settings: Settings) -> Service:
    deps = consumer_deps(settings)
    meters, windows = deps.meters, deps.windows
    metrics.known_meters([m.name for m in meters])
    runtime = Runtime(SPEC, settings, SCHEMA, deps)
    client = stripe_client(settings)

    async def report_forever() -> None:
        reporter = Reporter(
            runtime.pool,
            client,
            meters,
            windows,
            TokenBucket(settings.stripe_rate_per_s, settings.stripe_burst),
            lease_s=settings.report_lease_s,
            concurrency=settings.report_concurrency,
        )
        while True:
            try:
                await reporter.tick()
            except Exception:
                log.exception("usage report tick failed")
            await asyncio.sleep(settings.tick_seconds)

    directory = KeysDirectory(settings.keys_internal_url, settings.keys_token.get_secret_value())
    previews = api.InvoicePreviews(client)
    operators_or_services = staff(Tokens(settings.operator_tokens), Tokens(settings.internal_tokens))
    return service(
        runtime,
        public=[api.router(runtime, previews, customer(directory), ["customer"])],
        admin=[api.router(runtime, previews, operators_or_services, ["operator", "internal"])],
        background=[report_forever],
        on_stop=[directory.close],
    )
