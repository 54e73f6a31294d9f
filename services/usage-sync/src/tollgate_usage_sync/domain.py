"""Meters and windows. Pure: no I/O."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from tollgate_shared.contracts import UsageRecorded

Aggregation = Literal["sum", "count"]
DEFAULT_METERS_PATH = Path(__file__).with_name("meters.json")


@dataclass(frozen=True)
class Meter:
    name: str
    stripe_event_name: str
    aggregation: Aggregation
    filter: dict[str, object] = field(default_factory=dict)

    def matches(self, usage: UsageRecorded) -> bool:
        return all(getattr(usage, k, None) == v for k, v in self.filter.items())

    def value_of(self, usage: UsageRecorded) -> int:
        return usage.units if self.aggregation == "sum" else 1


def load_meters(path: Path) -> list[Meter]:
    return [Meter(**m) for m in json.loads(path.read_text())["meters"]]


def window_start(at: datetime, window: timedelta) -> datetime:
    """Windows are aligned to the Unix epoch, so every replica computes the same ones."""
    seconds = int(window.total_seconds())
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def report_identifier(account_id: str, meter: str, start: datetime) -> str:
    """Deterministic, so a retried report is a no-op at Stripe (max 100 characters)."""
    return f"tg-{meter}-{account_id}-{int(start.timestamp())}"[:100]
