"""Background processes with pid files, so a later `stop` finds what `up` started."""

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

FREE_PORTS = (21_000, 32_000)


class Processes:
    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        user: str | None = None,
        port: int | None = None,
    ) -> int:
        if (existing := self.pid(name)) is not None:
            return existing
        if port is not None and port_open(port):
            raise SystemExit(
                f"cannot start {name}: 127.0.0.1:{port} is taken by a process this stack did not start "
                "(another stack? set TOLLGATE_PORT_OFFSET, or stop it)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        pid = self.pid(name)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _kill(pid)
        return True

    def kill(self, name: str) -> None:
        """SIGKILL, for crash tests: no chance to clean up."""
        pid = self.pid(name)
        if pid is not None:
            _kill(pid)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(pid: int) -> None:
    """SIGKILL, and return once the process is gone: until then it holds its ports and
    files (Kafka's log directory lock), and whatever starts in its place fails on them."""
    _signal_group(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(what: str, ready: Callable[[], bool], timeout: float, on_fail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except SystemExit:
            raise
        except Exception:  # noqa: S110 - not ready yet is an exception for most probes
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s\n{on_fail()}")


def free_port() -> int:
    """A loopback port nobody is listening on right now, below the ephemeral range: a
    port the kernel hands to outgoing connections could be taken by one between this
    answer and the listener binding it. Above every stack port at any offset up to 1000,
    so it is never a stopped broker's port, taken before the broker comes back."""
    for _ in range(200):
        port = random.randint(FREE_PORTS[0], FREE_PORTS[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {FREE_PORTS}")
