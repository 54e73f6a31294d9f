"""Counting usage into windows, one consumed batch per transaction."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tollgate_shared.contracts import UsageIntake
from tollgate_shared.contracts.envelope import utcnow
from tollgate_shared.logging import get_logger
from tollgate_shared.usage_dedup import drop_republished

from . import repo
from .domain import Meter, report_identifier, window_start

log = get_logger(__name__)
WindowKey = tuple[str, str, datetime]  # account, meter, window start


@dataclass(frozen=True)
class Windows:
    length: timedelta
    grace_seconds: int

    def closed(self, start: datetime, now: datetime) -> bool:
        return start + self.length + timedelta(seconds=self.grace_seconds) <= now


async def aggregate_batch(
    conn: asyncpg.Connection, usages: list[UsageIntake], meters: list[Meter], windows: Windows
) -> int:
    """Add a batch of usage to its windows. Returns how many records counted (after dedup).

    A record whose window has closed (its grace passed, or it was already reported) is
    counted in the currently open window instead, and the adjustment is logged: late
    usage is billed late, never dropped.
    """
    fresh = await drop_republished(conn, usages)
    now = utcnow()
    sums, members = _count(fresh, meters, windows.length)
    closed = await repo.lock_closed_windows(conn, sorted(set(sums) | set(members)))
    current = window_start(now, windows.length)

    def retarget(key: WindowKey) -> WindowKey:
        if key in closed or windows.closed(key[2], now):
            log.warning(
                "late usage counted in the open window",
                account_id=key[0],
                meter=key[1],
                window=key[2].isoformat(),
                counted_in=current.isoformat(),
            )
            return (key[0], key[1], current)
        return key

    totals: dict[WindowKey, int] = defaultdict(int)
    for key, value in sums.items():
        totals[retarget(key)] += value
    moved_members: dict[WindowKey, set[str]] = defaultdict(set)
    for key, names in members.items():
        moved_members[retarget(key)] |= names
    for key, new in (await repo.add_members(conn, moved_members)).items():
        totals[key] += new
    await repo.add_to_windows(
        conn,
        [
            (*key, key[2] + windows.length, value, report_identifier(*key))
            for key, value in sorted(totals.items())
            if value
        ],
    )
    return len(fresh)


def _count(
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
