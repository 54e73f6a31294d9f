"""Meters and windows. Pure: no I/O.

A meter, as in API gateways' billing meters, has a name, the Stripe meter's
`event_name`, an aggregation over the usage records it matches, and filters on the
record (billing, route glob, method, status class).
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from tollgate_shared.contracts import UsageIntake

Aggregation = Literal["sum", "count", "unique_keys", "unique_customers"]
AGGREGATIONS: tuple[str, ...] = ("sum", "count", "unique_keys", "unique_customers")
FILTERS = frozenset({"billing", "route", "method", "status_class"})
DEFAULT_METERS_PATH = Path(__file__).with_name("meters.json")
WindowKey = tuple[str, str, datetime]  # account, meter, window start


@dataclass(frozen=True)
class Meter:
    name: str
    stripe_event_name: str
    aggregation: Aggregation
    filter: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"meter {self.name}: aggregation must be one of {AGGREGATIONS}")
        if unknown := set(self.filter) - FILTERS:
            raise ValueError(f"meter {self.name}: unknown filters {sorted(unknown)}")

    def matches(self, usage: UsageIntake) -> bool:
        f = self.filter
        if "billing" in f and usage.billing != f["billing"]:
            return False
        route = usage.route
        if "route" in f and not (route and fnmatchcase(route, f["route"])):
            return False
        if "method" in f and (usage.method or "").upper() != f["method"].upper():
            return False
        return not ("status_class" in f and status_class(usage.status) != f["status_class"])

    @property
    def counts_unique(self) -> bool:
        return self.aggregation in ("unique_keys", "unique_customers")

    def value_of(self, usage: UsageIntake) -> int:
        return self.total(usage.units, 1)

    def total(self, units: int, events: int) -> int:
        """The value of `events` records holding `units` units between them."""
        return units if self.aggregation == "sum" else events

    def member_of(self, usage: UsageIntake) -> str:
        return usage.key_id if self.aggregation == "unique_keys" else usage.account_id


def status_class(status: int | None) -> str | None:
    return f"{status // 100}xx" if status else None


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


@dataclass(frozen=True)
class Windows:
    length: timedelta
    grace_seconds: int

    def closed(self, start: datetime, now: datetime) -> bool:
        return start + self.length + timedelta(seconds=self.grace_seconds) <= now


def count_usage(
    usages: list[UsageIntake], meters: list[Meter], length: timedelta
) -> tuple[dict[WindowKey, int], dict[WindowKey, set[str]]]:
    """Per window: the summed or counted values, and the unique members.

    This runs for every record at Kafka rates, so each record only adds its units to
    its group: same key, window and shape (billing, route, method, status). Meters
    are applied per group afterwards, and a batch of 20,000 records has a few
    thousand groups at most. The window is kept while records stay inside it, as they
    mostly do (a partition arrives in time order), and windows are keyed by epoch
    seconds, which hash far faster than datetimes.
    """
    # Each group holds [units, events, a sample record, its window's start].
    groups: dict[tuple[str, str, int, str, str | None, str | None, int | None], list[Any]] = {}
    window_from = window_to = datetime.fromtimestamp(0, UTC)  # an empty window to start
    start = 0
    for u in usages:
        if not window_from <= u.occurred_at < window_to:
            window_from = window_start(u.occurred_at, length)
            window_to = window_from + length
            start = int(window_from.timestamp())
        group = (u.account_id, u.key_id, start, u.billing, u.route, u.method, u.status)
        if (found := groups.get(group)) is None:
            groups[group] = [u.units, 1, u, window_from]
        else:
            found[0] += u.units
            found[1] += 1

    sums: dict[WindowKey, int] = defaultdict(int)
    members: dict[WindowKey, set[str]] = defaultdict(set)
    for (account, *_), (units, events, sample, at) in groups.items():
        for meter in meters:
            if meter.matches(sample):
                if meter.counts_unique:
                    members[(account, meter.name, at)].add(meter.member_of(sample))
                else:
                    sums[(account, meter.name, at)] += meter.total(units, events)
    return sums, members
