"""A service process of a test's own, to be killed with SIGKILL at a named point.

Crash tests start one next to the test stack (own schema, own consumer group), pause
it at a fault point (`tollgate_shared.faults`), kill it exactly there, and start it again.
"""

import asyncio
import sys
from typing import Any


class CrashableService:
    def __init__(self, stack: dict[str, Any], name: str, module: str, env: dict[str, str]) -> None:
        self.launcher, self.name, self.module, self.env = stack["launcher"], name, module, env

    def start(self, pause_at: str | None = None) -> None:
        """Start it; with `pause_at` (`point[:text]`) it stops dead at that point."""
        env = self.env | ({"TOLLGATE_PAUSE_AT": pause_at} if pause_at else {})
        self.launcher.procs.start(self.name, [sys.executable, "-m", self.module], env)

    def kill(self) -> None:
        self.launcher.procs.kill(self.name)

    def log(self) -> str:
        path = self.launcher.procs.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait_for_log(self, text: str, timeout: float = 60) -> None:
        for _ in range(int(timeout * 10)):
            if text in self.log():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()[-3000:]}")
