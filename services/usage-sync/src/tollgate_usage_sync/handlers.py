"""usage-sync's use case on intake: count a consumed batch of usage into its windows, in
the consumer's transaction."""

from collections import defaultdict

import asyncpg

from tollgate_shared.contracts import UsageIntake
from tollgate_shared.contracts.envelope import utcnow
from tollgate_shared.logging import get_logger
from tollgate_shared.usage_dedup import drop_republished

from . import repo
from .domain import Meter, WindowKey, Windows, count_usage, report_identifier, window_start

log = get_logger(__name__)


async def aggregate_batch(
    conn: asyncpg.Connection, usages: list[UsageIntake], meters: list[Meter], windows: Windows, *, dedup: bool = True
) -> int:
    """Add a batch of usage to its windows. Returns how many records counted (after dedup).

    A record whose window has closed (its grace passed, or it was already reported) is
    counted in the currently open window instead, and the adjustment is logged: late
    usage is billed late, never dropped.
    """
    fresh = await drop_republished(conn, usages) if dedup else usages
    now = utcnow()
    sums, members = count_usage(fresh, meters, windows.length)
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
