"""The one place that wires usage-sync."""

import asyncio
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import stripe
from fastapi import FastAPI

from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, service_app

from . import consumers
from .config import Settings
from .domain import load_meters
from .handlers import Reporter, Windows

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = get_logger(__name__)


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("usage-sync", "usage_sync", settings, MIGRATIONS)
    meters = load_meters(settings.meters_file)
    windows = Windows(timedelta(seconds=settings.window_seconds), settings.grace_seconds)
    consumers.register(runtime.broker, lambda: runtime.pool, meters, windows)
    client = stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )
    tasks: list[asyncio.Task[None]] = []

    async def report_forever() -> None:
        reporter = Reporter(runtime.pool, client, meters, windows)
        while True:
            try:
                await reporter.tick()
            except Exception:
                log.exception("usage report tick failed")
            await asyncio.sleep(settings.tick_seconds)

    async def start() -> None:
        tasks.append(asyncio.create_task(report_forever(), name="usage-reporter"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    return service_app(runtime, on_start=[start], on_stop=[stop])
