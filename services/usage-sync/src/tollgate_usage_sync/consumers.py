"""What usage-sync consumes: every recorded usage, counted into its meters' windows."""

from dataclasses import dataclass

import asyncpg

from tollgate_shared.consumer import BATCH_RECORDS, Subscription
from tollgate_shared.contracts import UsageIntake, parse_usage
from tollgate_shared.contracts.topics import USAGE_RECORDED

from .domain import Meter, Windows
from .handlers import aggregate_batch


@dataclass(frozen=True)
class Deps:
    meters: list[Meter]
    windows: Windows


async def on_usage(deps: Deps, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    await aggregate_batch(conn, usages, deps.meters, deps.windows)


async def on_dead_lettered_usage(deps: Deps, conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
    """A usage record back from the DLQ was never counted, though later records of its key
    moved the watermark past it: count it without the watermark (replay runs it once)."""
    await aggregate_batch(conn, usages, deps.meters, deps.windows, dedup=False)


USAGE = Subscription(
    "usage",
    USAGE_RECORDED,
    parse_usage,
    on_usage,
    "Usage is counted into hourly windows per customer and meter; re-published records are dropped by key_units_total.",
    max_records=BATCH_RECORDS,
    replay=on_dead_lettered_usage,
)
SUBSCRIPTIONS = (USAGE,)
