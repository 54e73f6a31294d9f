"""Counting usage into windows, one consumed batch per transaction."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    sums, members = _count(fresh, meters, int(windows.length.total_seconds()))
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
    usages: list[UsageIntake], meters: list[Meter], window_seconds: int
) -> tuple[dict[WindowKey, int], dict[WindowKey, set[str]]]:
    """Per window: the summed or counted values, and the unique members.

    This runs for every record at Kafka rates, so what repeats is worked out once: the
    meters a record's shape matches (per batch), and the window a record falls in (kept
    while records stay inside it, as they mostly do: a partition arrives in time order).
    Windows are keyed by epoch seconds meanwhile, which hash far faster than datetimes.
    """
    sums: dict[tuple[str, str, int], int] = defaultdict(int)
    members: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    matching: dict[tuple[str, str | None, str | None, int | None], tuple[tuple[Meter, bool], ...]] = {}
    length = timedelta(seconds=window_seconds)
    window_from = window_to = datetime.fromtimestamp(0, UTC)  # an empty window to start
    start = 0
    for usage in usages:
        shape = (usage.billing, usage.route, usage.method, usage.status)
        if (matched := matching.get(shape)) is None:
            matched = matching[shape] = tuple((m, m.counts_unique) for m in meters if m.matches(usage))
        if not matched:
            continue
        if not window_from <= usage.occurred_at < window_to:
            window_from = window_start(usage.occurred_at, length)
            window_to = window_from + length
            start = int(window_from.timestamp())
        for meter, unique in matched:
            if unique:
                members[(usage.account_id, meter.name, start)].add(meter.member_of(usage))
            else:
                sums[(usage.account_id, meter.name, start)] += meter.value_of(usage)
    starts = {start: datetime.fromtimestamp(start, UTC) for _, _, start in sums.keys() | members.keys()}
    return (
        {(a, m, starts[s]): v for (a, m, s), v in sums.items()},
        {(a, m, starts[s]): v for (a, m, s), v in members.items()},
    )
