"""A periodic timer for the event loop with the kernel's precision (Linux `timerfd`).

The load generator sends each request at its scheduled time and measures from that
time, so a request sent late is counted as the server's latency. libuv's timers, which
`asyncio.sleep` uses on uvloop, count whole milliseconds: a send due in 0.7 ms went out
after 1 ms or more, and one due in under 0.5 ms did not wait at all, so the generator
spun, at times using most of a core that the server under test needed. A `timerfd`
wakes the loop when its time comes, to the microsecond, and counts the periods the loop
was too busy to see, so none is skipped.
"""

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# timerfd's flags are defined as the open(2) flags of the same names.
TFD_NONBLOCK, TFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timespec(ns: int) -> _Timespec:
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


@contextmanager
def periodic(first_ns: int, interval_ns: int, on_tick: Callable[[int], None]) -> Iterator[None]:
    """Call `on_tick(n)` on the running loop from `first_ns` (`time.monotonic_ns()`) on,
    every `interval_ns`; n is how many periods ended since the last call (more than one
    when the loop was late)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.timerfd_create(time.CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create")
    loop = asyncio.get_running_loop()
    try:
        spec = _Itimerspec(_timespec(interval_ns), _timespec(first_ns))
        if libc.timerfd_settime(fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

        def expired() -> None:
            try:
                periods = int.from_bytes(os.read(fd, 8), sys.byteorder)
            except BlockingIOError:  # already read: nothing has ended since
                return
            on_tick(periods)

        loop.add_reader(fd, expired)
        yield
    finally:
        loop.remove_reader(fd)
        os.close(fd)
