"""The one place that wires the ledger."""

import asyncio
from contextlib import suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, service_app
from tollgate_shared.tx_consumer import TransactionalConsumer

from . import api, intake, metrics
from .book import Book
from .config import Settings
from .grants import expire_grants
from .transfers import expire_holds

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = get_logger(__name__)


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("ledger", settings.schema_name, settings, MIGRATIONS)
    running: list[TransactionalConsumer[Any]] = []
    tasks: list[asyncio.Task[None]] = []

    async def sweep_forever() -> None:
        """Holds and credit grants end at their deadline even if nobody touches them; and
        /metrics learns how far the journal has got."""
        while True:
            try:
                async with runtime.pool.acquire() as conn:
                    async with conn.transaction():
                        book = await Book.open(conn, low_balance_threshold=settings.low_balance_threshold)
                        await expire_holds(book)
                        await expire_grants(book)
                    await metrics.refresh(conn)
            except Exception:
                log.exception("expiry sweep failed")
            await asyncio.sleep(settings.sweep_interval_s)

    async def start() -> None:
        for consumer in intake.consumers(settings, runtime.pool):
            await consumer.start()
            running.append(consumer)
        tasks.append(asyncio.create_task(sweep_forever(), name="ledger-expiry"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for consumer in running:
            await consumer.stop()

    return service_app(runtime, api.router(runtime, settings), on_start=[start], on_stop=[stop])
