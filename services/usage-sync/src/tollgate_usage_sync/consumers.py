"""Kafka subscribers of usage-sync."""

from collections.abc import Callable

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import UsageRecorded
from tollgate_shared.contracts.topics import USAGE_RECORDED

from .domain import Meter
from .handlers import Windows, aggregate_usage

GROUP = "usage-sync"


def register(broker: KafkaBroker, pool: Callable[[], object], meters: list[Meter], windows: Windows) -> None:
    async def on_usage(event: UsageRecorded) -> None:
        await aggregate_usage(event, pool(), meters, windows)  # type: ignore[arg-type]

    subscribe(broker, USAGE_RECORDED, group_id=GROUP, parse=UsageRecorded.model_validate_json, handle=on_usage)
