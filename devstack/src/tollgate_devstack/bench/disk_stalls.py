"""How long the disk keeps a commit waiting: the floor under any commit-before-answer p99.

A validation is answered only after its commit's WAL is on disk, so while the virtual
disk stalls an `fdatasync`, every validation that arrives meanwhile waits for it. This
probe writes 8 kB and `fdatasync`s it once a millisecond (the benchmark's 1,000/s) in
the stack's data directory, and reports the share of wall time during which a request
arriving then would wait over 5 ms for the flush in progress. Above 1%, no service that
commits before answering can have a p99 under 5 ms on this disk, whatever else it does;
and the share is a lower bound, since it leaves out the queue a stall leaves behind.

`python -m tollgate_devstack.bench.disk_stalls [seconds]` (`make disk-stalls`) runs it
alone; `bench-keys` runs it beside the service's figures.
"""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import bench_config, figure

GOAL_S = 0.005
BLOCK = 8192
BLOCKS = 2048  # a 16 MB file, written round as WAL segments are


@dataclass(frozen=True)
class DiskStalls:
    seconds: float
    flushes: int
    waiting_share: float  # of wall time, 0-1
    longest_ms: float
    over_goal: int


def waiting_share(durations: list[float], seconds: float, goal_s: float = GOAL_S) -> float:
    """A request arriving during a flush of d seconds waits for what is left of it: over
    the goal for the first d - goal of it."""
    return sum(d - goal_s for d in durations if d > goal_s) / seconds


def probe(path: Path, seconds: float, period_s: float = 0.001) -> DiskStalls:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, BLOCK * BLOCKS)
        os.fsync(fd)  # allocated before timing, as PostgreSQL's WAL segments are
        block = os.urandom(BLOCK)
        durations: list[float] = []
        start = time.perf_counter()
        # Counted, not compared against a summed clock: adding 1 ms a thousand times drifts
        # enough in floating point to schedule one flush too many.
        for n in range(1, round(seconds / period_s) + 1):
            began = time.perf_counter()
            os.pwrite(fd, block, (len(durations) % BLOCKS) * BLOCK)
            os.fdatasync(fd)
            durations.append(time.perf_counter() - began)
            time.sleep(max(0.0, start + n * period_s - time.perf_counter()))
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return DiskStalls(
        seconds=elapsed,
        flushes=len(durations),
        waiting_share=waiting_share(durations, elapsed),
        longest_ms=max(durations) * 1e3,
        over_goal=sum(d > GOAL_S for d in durations),
    )


def report(stalls: DiskStalls, name: str) -> None:
    print(
        f"disk-stalls: {stalls.flushes} flushes in {stalls.seconds:.0f} s, {stalls.over_goal} over 5 ms, "
        f"longest {stalls.longest_ms:.1f} ms",
        flush=True,
    )
    figure(name, stalls.waiting_share * 100, "%")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    state_dir = bench_config().state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    report(probe(state_dir / "disk-stalls.probe", seconds), "disk.wait_over_5ms_pct")


if __name__ == "__main__":
    main()
