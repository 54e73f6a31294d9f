"""What a newcomer does first works: from a checkout private to root, PostgreSQL starts;
and `make run` stopped by a supervisor's SIGTERM leaves nothing running."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from tollgate_devstack import infra
from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.processes import Processes, free_port, port_open, wait_until
from tollgate_devstack.stack import Stack
from tollgate_devstack.tls import ensure_certificates

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the private-checkout case is root's")


async def test_postgres_starts_for_a_checkout_private_to_root(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    state = home / "checkout" / ".stack"
    cfg = StackConfig(state_dir=state, cache_dir=tmp_path / "cache", ports={"postgres": free_port()})
    procs = Processes(state)
    try:
        infra.start_postgres(cfg, procs, ensure_certificates(state / "tls"))
        conn = await asyncpg.connect(cfg.database_url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        elsewhere = Path((state / "pg-elsewhere").read_text().strip())
        assert (elsewhere / "PG_VERSION").exists()
        assert oct(home.stat().st_mode & 0o777) == "0o700"  # the newcomer's home is left as it was
    finally:
        procs.stop("postgres")
        if (state / "pg-elsewhere").exists():
            shutil.rmtree(Path((state / "pg-elsewhere").read_text().strip()).parent, ignore_errors=True)


def test_sigterm_to_make_run_stops_the_whole_stack(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    env = {**os.environ, "TOLLGATE_STACK_DIR": str(state), "TOLLGATE_PORT_OFFSET": "500"}
    ports = StackConfig.from_env(env).ports
    log = (tmp_path / "make-run.log").open("wb")
    make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    try:
        # Once the services are starting, everything below them is up: stop it there.
        def text() -> str:
            return (tmp_path / "make-run.log").read_text(errors="replace")

        def starting_services() -> bool:
            if make.poll() is not None:
                raise SystemExit(f"make run exited with {make.returncode}:\n{text()}")
            return "starting checkout" in text()

        wait_until("make run to start the services", starting_services, 240, text)
        time.sleep(2)
        make.send_signal(signal.SIGTERM)  # to make alone, as a supervisor does
        make.wait(timeout=120)
    finally:
        if make.poll() is None:
            make.kill()
    procs = Processes(state)
    names = ["postgres", "kafka", "stripe-mock", "stripe-emulator", "smtp-capture", "checkout", "ledger", "keys"]
    left = [n for n in names if procs.pid(n) is not None]
    Stack(StackConfig.from_env(env)).down()  # whatever the assertions find, leave nothing behind
    assert left == []
    assert [p for p in ports.values() if port_open(p)] == [], text()
