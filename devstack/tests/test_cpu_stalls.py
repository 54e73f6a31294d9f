"""The CPU-stall probe's bookkeeping: a spinner's missing time goes to the tasks that ran
on its CPU meanwhile, and only what no task explains goes to the host."""

import subprocess
import sys
import time

import pytest

from tollgate_devstack.bench.cpu_stalls import (
    SPINNER,
    Gap,
    Run,
    all_cpus_stalled,
    attribute,
    idle_cgroup,
    parse_switches,
    spinner_command,
)


def switch(at: float, prev: str, to: str) -> str:
    """A sched_switch line as `perf script -F cpu,time,trace` prints it, on CPU 1."""
    return (
        f"[001] {at:12.6f}: prev_comm={prev} prev_pid=1 prev_prio=120 prev_state=R ==> "
        f"next_comm={to} next_pid=2 next_prio=120"
    )


SWITCHES = [
    switch(100.000, "swapper/1", SPINNER),
    switch(100.001, SPINNER, "kdamond.0"),
    switch(100.004, "kdamond.0", SPINNER),
    switch(100.020, SPINNER, "C2 CompilerThre"),
    switch(100.021, "C2 CompilerThre", SPINNER),
]


def test_a_switch_line_gives_the_run_of_the_task_it_switches_to() -> None:
    runs = parse_switches(SWITCHES)
    assert runs[1][1] == Run(100.001, 100.004, "kdamond.0")
    # A task name with a space in it stays whole.
    assert runs[1][3] == Run(100.020, 100.021, "C2 CompilerThre")
    assert len(runs[1]) == 4  # the last switch opens a run that has not ended


def test_a_gap_is_charged_to_the_tasks_that_ran_and_the_rest_to_the_host() -> None:
    runs = parse_switches(SWITCHES)
    # The spinner's clock jumped for 5 ms from 100.0005: kdamond ran 3 ms of it and the
    # spinner itself was on the CPU for the other 2, so the host held the virtual CPU.
    # Later, a 2 ms jump from 100.0195: the compiler thread ran 1 ms of it.
    stalls = attribute([Gap(1, 100.0005, 100.0055), Gap(1, 100.0195, 100.0215)], runs, window=(100.0, 100.03))
    assert stalls.takers["kdamond.0"].seconds == pytest.approx(0.003)
    assert stalls.takers["C2 CompilerThre"].seconds == pytest.approx(0.001)
    assert stalls.host[1] == pytest.approx(0.003)
    assert SPINNER not in stalls.takers
    assert stalls.takers["kdamond.0"].longest == pytest.approx(0.003)
    assert stalls.takers["kdamond.0"].runs_over_4ms == 0


def test_only_the_moments_every_cpu_was_held_count_as_a_whole_machine_stall() -> None:
    spans = [Gap(0, 1.000, 1.010), Gap(1, 1.004, 1.020), Gap(0, 2.0, 2.001)]
    assert all_cpus_stalled(spans, cpus=2) == [pytest.approx(0.006)]
    assert all_cpus_stalled([Gap(0, 1.0, 1.1)], cpus=2) == []


BUSY_FOR_ONE_SECOND = """
import os, time
os.sched_setaffinity(0, {0})
end = time.monotonic() + 1
while time.monotonic() < end:
    pass
print(time.process_time())
"""


def test_a_spinner_in_the_idle_cgroup_leaves_its_cpu_to_any_other_task() -> None:
    group = idle_cgroup()
    if group is None:
        pytest.skip("no cpu cgroup with cpu.idle here (needs root and Linux 5.15+)")
    # The probe's own spinner on CPU 0, in a session of its own: outside the cgroup, that
    # session would be an autogroup weighted like any other.
    spinner = subprocess.Popen(spinner_command(0, 30, group), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.5)
        # A task busy for a second of wall time on the spinner's CPU gets nearly all of it;
        # beside a spinner that is idle only within its autogroup it got about half.
        busy = subprocess.run([sys.executable, "-c", BUSY_FOR_ONE_SECOND], capture_output=True, text=True, check=True)
        assert float(busy.stdout) > 0.8
    finally:
        spinner.kill()
        spinner.wait()
        group.rmdir()
