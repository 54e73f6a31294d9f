"""The one place that wires the ledger."""

import asyncio
from datetime import timedelta
from pathlib import Path

from tollgate_shared.auth import KeysDirectory, Tokens, customer, staff, staff_on_scope
from tollgate_shared.contracts.topics import LEDGER_ALERTS, LEDGER_BALANCES
from tollgate_shared.logging import get_logger
from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service

from . import admin_api, api, consumers, finance_api, metrics
from .book import Book
from .coalescer import Coalescer
from .config import Settings
from .exports import GlCodes
from .handlers import expire_what_is_due

SCHEMA = Path(__file__).resolve().parent / "schema"  # migrations, functions, grants
PUBLISHES = (LEDGER_BALANCES, LEDGER_ALERTS)
SPEC = ServiceSpec("ledger", "Tollgate ledger", subscriptions=consumers.SUBSCRIPTIONS, publishes=PUBLISHES)
log = get_logger(__name__)


def consumer_deps(settings: Settings) -> consumers.Deps:
    days = settings.paid_credits_valid_days
    return consumers.Deps(settings.low_balance_threshold, timedelta(days=days) if days else None)


def build_app(settings: Settings) -> Service:
    threshold = settings.low_balance_threshold
    runtime = Runtime(SPEC, settings, SCHEMA, consumer_deps(settings))
    directory = KeysDirectory(settings.keys_internal_url, settings.keys_token.get_secret_value())
    operators = staff(Tokens(settings.operator_tokens))
    operators_or_services = staff(Tokens(settings.operator_tokens), Tokens(settings.internal_tokens))
    coalescer = Coalescer(lambda: runtime.pool, threshold)

    async def sweep_forever() -> None:
        """Holds and credit grants end at their deadline even if nobody touches them; and
        /metrics learns how far the journal has got."""
        while True:
            try:
                async with runtime.pool.acquire() as conn:
                    async with conn.transaction():
                        await expire_what_is_due(await Book.open(conn, low_balance_threshold=threshold))
                    await metrics.refresh(conn)
            except Exception:
                log.exception("expiry sweep failed")
            await asyncio.sleep(settings.sweep_interval_s)

    async def start() -> None:
        coalescer.start()

    svc = service(
        runtime,
        public=[api.router(runtime, customer(directory), ["customer"])],
        admin=[
            api.router(runtime, operators_or_services, ["operator", "internal"]),
            # Before the admin routes: `/v1/ledger-accounts/{id}` would otherwise take `…/statement`.
            finance_api.router(runtime, operators, GlCodes.load(settings.gl_codes_file)),
            admin_api.router(runtime, operators, threshold, coalescer),
        ],
        background=[sweep_forever],
        on_start=[start],
        on_stop=[coalescer.stop, directory.close],
    )
    # Outermost on the admin listener, ahead of FastAPI's stack (tollgate_shared.fastpath).
    guard = staff_on_scope(Tokens(settings.operator_tokens))
    svc.admin = admin_api.transfers_route(svc.admin, coalescer, guard, svc.audit)
    return svc
