"""Crash-test hooks: hold a process at a named point so a test can SIGKILL it exactly there.

Set TOLLGATE_PAUSE_AT to a comma-separated list of point names, each optionally
`name:text` to pause only when `text` occurs in the point's detail (e.g. an account id
in the batch). Nothing else reads it; an unset variable costs one lookup per point.
"""

import asyncio
import os

from .logging import get_logger

PAUSE_ENV = "TOLLGATE_PAUSE_AT"
log = get_logger(__name__)


def armed() -> bool:
    """Whether any pause point is set: hot paths build a point's detail only then."""
    return bool(os.environ.get(PAUSE_ENV))


async def pause_point(name: str, detail: str = "") -> None:
    for wanted in os.environ.get(PAUSE_ENV, "").split(","):
        point, _, text = wanted.partition(":")
        if point == name and text in detail:
            log.warning("paused at fault point", point=name)
            await asyncio.Event().wait()  # until the test kills the process
