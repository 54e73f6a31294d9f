"""The one place that wires usage-sync."""

import asyncio
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import stripe
from fastapi import FastAPI

from tollgate_shared.contracts import UsageIntake, parse_usage
from tollgate_shared.contracts.topics import USAGE_RECORDED
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, service_app
from tollgate_shared.tx_consumer import TransactionalConsumer

from . import api
from .aggregate import Windows, aggregate_batch
from .config import Settings
from .domain import load_meters
from .ratelimit import TokenBucket
from .reporter import Reporter

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = get_logger(__name__)


def stripe_client(settings: Settings) -> stripe.StripeClient:
    # Retries are the reporter's job (it keeps state across them), not the SDK's.
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("usage-sync", settings.schema_name, settings, MIGRATIONS)
    meters = load_meters(settings.meters_file)
    windows = Windows(timedelta(seconds=settings.window_seconds), settings.grace_seconds)
    client = stripe_client(settings)
    running: list[asyncio.Task[None]] = []
    consumers: list[TransactionalConsumer[UsageIntake]] = []

    async def apply(conn: object, usages: list[UsageIntake]) -> None:
        await aggregate_batch(conn, usages, meters, windows)  # type: ignore[arg-type]

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

    async def start() -> None:
        consumer = TransactionalConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic=USAGE_RECORDED,
            group_id=settings.group_id,
            pool=runtime.pool,
            parse=parse_usage,
            apply=apply,
            max_records=settings.batch_max_records,
        )
        await consumer.start()
        consumers.append(consumer)
        running.append(asyncio.create_task(report_forever(), name="usage-reporter"))

    async def stop() -> None:
        for task in running:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for consumer in consumers:
            await consumer.stop()

    return service_app(runtime, api.router(runtime, client), on_start=[start], on_stop=[stop])
