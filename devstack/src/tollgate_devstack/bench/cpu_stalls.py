"""Who takes the CPUs on a quiet machine, and for how long at a stretch.

The keys benchmark's p99 at 1,000/s moves with the machine more than with the code
(BENCHMARKS.md). This probe says what the machine does besides our work. Run it with
the stack idle: `make cpu-stalls`, or `python -m tollgate_devstack.bench.cpu_stalls
[seconds]`, as root (perf records every CPU; Debian's `linux-perf` is installed on first
use).

An idle-priority spinner on each CPU (SCHED_IDLE, in a cgroup with `cpu.idle`) reads the
clock in a tight loop. It runs whenever nothing else wants that CPU, so every jump in its
clock is time it did not get. `perf` records every context switch meanwhile: a jump
during which other tasks ran is charged to them; what remains, the spinner shown as
running while its clock jumped, is time the whole virtual CPU was not running: the host
took it. While the host holds every CPU at once, nothing in the guest runs at all.
"""

import bisect
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import infra
from .common import figure, machine

# A gap shorter than this is the loop itself (an interrupt, a page fault), not a stall.
GAP_NS = 200_000
SPINNER = "cpu-stall-spin"
PR_SET_NAME = 15
# Where a cpu cgroup can be made: cgroup v1's cpu hierarchy, or cgroup v2's root.
CPU_CGROUP_PARENTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))


@dataclass(frozen=True)
class Run:
    """A task on a CPU from `start` to `end` (seconds, CLOCK_MONOTONIC)."""

    start: float
    end: float
    task: str


@dataclass(frozen=True)
class Gap:
    cpu: int
    start: float
    end: float


@dataclass
class Taker:
    seconds: float = 0.0
    longest: float = 0.0
    runs_over_4ms: int = 0


@dataclass
class Stalls:
    """Where the spinners' missing time went."""

    takers: dict[str, Taker] = field(default_factory=lambda: defaultdict(Taker))
    host_spans: list[Gap] = field(default_factory=list)

    @property
    def host(self) -> dict[int, float]:
        """Seconds per CPU that the host held it."""
        held: dict[int, float] = defaultdict(float)
        for span in self.host_spans:
            held[span.cpu] += span.end - span.start
        return held


def idle_cgroup() -> Path | None:
    """A new cpu cgroup whose tasks run only when nothing else wants the CPU (`cpu.idle`,
    Linux 5.15+, as root); None where there is none to be had.

    SCHED_IDLE alone does not make a spinner idle where autogrouping is on (Debian's
    default): each session is then a group of its own at the top level, weighted like any
    other, and the spinner took a fair share of its CPU from whatever it shared it with
    (beside a keys service at 1,000/s, 2026-12-03: p50 3.3-3.9 ms against 1.2-1.6).
    A task in a cgroup of its own is outside autogrouping. Remove it with rmdir once its
    tasks have exited."""
    for parent in CPU_CGROUP_PARENTS:
        group = parent / f"tollgate-cpu-stalls-{os.getpid()}"
        try:
            group.mkdir()
        except OSError:
            continue
        # Only a cgroup file system makes the file itself; a mkdir elsewhere (the tmpfs
        # that holds cgroup v1's hierarchies) does not.
        if not (group / "cpu.idle").exists():
            group.rmdir()
            continue
        (group / "cpu.idle").write_text("1")
        return group
    return None


def spin(cpu: int, seconds: float, group: Path | None = None) -> None:
    """Print when this spinner began and ended (ns), then each jump of the CPU's clock
    longer than GAP_NS as `start_ns length_ns`."""
    # perf names each run by the task's name: ours must be told apart from what it measures.
    ctypes.CDLL(None).prctl(PR_SET_NAME, SPINNER.encode(), 0, 0, 0)
    os.sched_setaffinity(0, {cpu})
    if group is not None:
        (group / "cgroup.procs").write_text(str(os.getpid()))
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    now = time.monotonic_ns
    gaps = []
    started = last = now()
    end = started + int(seconds * 1e9)
    while last < end:
        t = now()
        if t - last > GAP_NS:
            gaps.append((last, t - last))
        last = t
    print(f"{started} {last}", *(f"{start} {length}" for start, length in gaps), sep="\n", flush=True)


def parse_switches(lines: Iterable[str]) -> dict[int, list[Run]]:
    """Runs per CPU from `perf script -F cpu,time,trace` of sched:sched_switch.

    Only the `next_` fields are read: each switch starts the next task's run and ends
    the one before it on that CPU. (On this kernel perf sometimes prints a stale
    `prev_pid`, so the `prev_` fields are not trusted.)"""
    runs: dict[int, list[Run]] = defaultdict(list)
    current: dict[int, tuple[float, str]] = {}
    for line in lines:
        cpu_field, _, rest = line.strip().partition("]")
        if not cpu_field.startswith("[") or "next_comm=" not in rest:
            continue
        cpu = int(cpu_field[1:])
        at = float(rest.split(":", 1)[0])
        task = rest.split("next_comm=", 1)[1].split(" next_pid=", 1)[0]
        if cpu in current:
            started, running = current[cpu]
            runs[cpu].append(Run(started, at, running))
        current[cpu] = (at, task)
    return runs


def attribute(gaps: list[Gap], runs: dict[int, list[Run]], window: tuple[float, float]) -> Stalls:
    """Charge each gap to the tasks that ran on its CPU meanwhile; the rest to the host.
    Each task's longest run counts runs within `window`, while every spinner spun."""
    stalls = Stalls()
    for task_runs in runs.values():
        for run in task_runs:
            if run.task == SPINNER or run.task.startswith("swapper") or not window[0] <= run.start < window[1]:
                continue
            taker = stalls.takers[run.task]
            length = run.end - run.start
            taker.longest = max(taker.longest, length)
            taker.runs_over_4ms += length > 0.004
    starts = {cpu: [run.start for run in cpu_runs] for cpu, cpu_runs in runs.items()}
    for gap in gaps:
        cursor = gap.start
        cpu_runs = runs.get(gap.cpu, [])
        # A CPU's runs follow one another, so the first that can overlap is the last to start before the gap.
        first = max(bisect.bisect_right(starts.get(gap.cpu, []), gap.start) - 1, 0)
        for run in cpu_runs[first:]:
            if run.start >= gap.end:
                break
            if run.end <= gap.start or run.task == SPINNER:
                continue
            overlap = min(run.end, gap.end) - max(run.start, gap.start)
            stalls.takers[run.task].seconds += overlap
            if run.start > cursor:
                stalls.host_spans.append(Gap(gap.cpu, cursor, run.start))
            cursor = max(cursor, run.end)
        if gap.end > cursor:
            stalls.host_spans.append(Gap(gap.cpu, cursor, gap.end))
    return stalls


def all_cpus_stalled(spans: list[Gap], cpus: int) -> list[float]:
    """Lengths of the moments when the host held every CPU at once, longest first."""
    by_cpu: dict[int, list[Gap]] = defaultdict(list)
    for span in spans:
        by_cpu[span.cpu].append(span)
    if len(by_cpu) < cpus:
        return []
    common = [(s.start, s.end) for s in by_cpu[0]]
    for cpu in range(1, cpus):
        common = [
            (max(a, s.start), min(b, s.end)) for a, b in common for s in by_cpu[cpu] if min(b, s.end) > max(a, s.start)
        ]
    return sorted((b - a for a, b in common), reverse=True)


def read_spinner(cpu: int, output: str) -> tuple[tuple[float, float], list[Gap]]:
    """A spinner's output (see `spin`) as its spinning window and its gaps, in seconds."""
    first, *rest = output.splitlines()
    started, ended = (int(n) / 1e9 for n in first.split())
    gaps = [Gap(cpu, int(start) / 1e9, (int(start) + int(length)) / 1e9) for start, length in map(str.split, rest)]
    return (started, ended), gaps


def spinner_command(cpu: int, seconds: float, group: Path | None) -> list[str]:
    """The command that runs `spin` on `cpu` for `seconds`, in `group` if there is one."""
    command = [sys.executable, "-m", "tollgate_devstack.bench.cpu_stalls", "spin", str(cpu), str(seconds)]
    return [*command, str(group)] if group is not None else command


def measure(seconds: float, group: Path | None) -> tuple[Stalls, list[float]]:
    cpus = os.cpu_count() or 1
    perf_bin = infra.perf_bin()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "switches.data"
        perf = subprocess.Popen(
            [perf_bin, "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-e", "sched:sched_switch", "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # perf is recording before the first spinner starts
        spinners = [
            subprocess.Popen(spinner_command(cpu, seconds, group), stdout=subprocess.PIPE, text=True)
            for cpu in range(cpus)
        ]
        outputs = [p.communicate()[0] for p in spinners]
        perf.send_signal(signal.SIGINT)
        perf.wait()
        script = subprocess.run(
            [perf_bin, "script", "-i", str(data), "-F", "cpu,time,trace"], capture_output=True, text=True, check=True
        )
    spinners_read = [read_spinner(cpu, output) for cpu, output in enumerate(outputs)]
    window = (max(w[0] for w, _ in spinners_read), min(w[1] for w, _ in spinners_read))
    gaps = [gap for _, spinner_gaps in spinners_read for gap in spinner_gaps]
    stalls = attribute(gaps, parse_switches(script.stdout.splitlines()), window)
    return stalls, all_cpus_stalled(stalls.host_spans, cpus)


def main() -> None:
    if sys.argv[1:2] == ["spin"]:
        spin(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    print(f"cpu-stalls: {seconds:.0f} s, an idle-priority spinner per CPU, on {machine()}", flush=True)
    group = idle_cgroup()
    if group is None:
        print("cpu-stalls: no cpu cgroup with cpu.idle here: with autogrouping on, the spinners take a fair share")
    try:
        stalls, together = measure(seconds, group)
    finally:
        if group is not None:
            group.rmdir()
    taken = sorted(stalls.takers.items(), key=lambda kv: -kv[1].seconds)
    # A user task's run here is its run against an idle-priority task, which never
    # preempts; a kernel thread's (this kernel is built PREEMPT_NONE) holds its CPU
    # against any task.
    print(f"{'task':<18} {'ms/s taken':>10} {'longest run ms':>15} {'runs > 4 ms':>12}")
    for task, taker in taken[:10]:
        print(
            f"{task:<18} {taker.seconds * 1e3 / seconds:>10.1f} {taker.longest * 1e3:>15.2f} {taker.runs_over_4ms:>12}"
        )
    figure("machine.taken_by_other_tasks_ms_per_s", sum(t.seconds for _, t in taken) * 1e3 / seconds, "ms/s")
    figure("machine.host_took_ms_per_s", sum(stalls.host.values()) * 1e3 / seconds, "ms/s")
    figure("machine.all_cpus_stalled_max_ms", (together[0] if together else 0.0) * 1e3, "ms")
    figure("machine.all_cpus_stalled_over_2ms", sum(t > 0.002 for t in together), "times")


if __name__ == "__main__":
    main()
