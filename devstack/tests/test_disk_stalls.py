"""The disk-stall probe: what share of the time a commit arriving then waits over 5 ms."""

from pathlib import Path

import pytest

from tollgate_devstack.bench.disk_stalls import probe, waiting_share


def test_only_the_part_of_a_flush_beyond_the_goal_counts() -> None:
    # 30 ms and 7 ms flushes in a second: arrivals in their first 25 and 2 ms wait over 5 ms.
    assert waiting_share([0.0002] * 998 + [0.030, 0.007], seconds=1.0) == pytest.approx(0.027)


def test_flushes_within_the_goal_keep_no_one_waiting() -> None:
    assert waiting_share([0.0049, 0.005, 0.0001], seconds=1.0) == 0


def test_the_probe_flushes_on_schedule_and_leaves_no_file(tmp_path: Path) -> None:
    stalls = probe(tmp_path / "probe", seconds=0.2)
    # One per millisecond of schedule: after a slow flush the probe catches up, as a queue
    # of commits would, rather than skipping the flushes it was late for.
    assert stalls.flushes == 200 and stalls.seconds >= 0.199
    assert 0 <= stalls.waiting_share < 1 and stalls.longest_ms > 0
    assert list(tmp_path.iterdir()) == []
