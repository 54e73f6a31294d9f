"""The benchmarks run on a stack of their own, apart from `make run`'s and the tests'."""

from pathlib import Path

import pytest

from tollgate_bench.common import bench_config
from tollgate_devstack.config import StackConfig


@pytest.fixture(autouse=True)
def _no_stack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOLLGATE_PORT_OFFSET", "TOLLGATE_STACK_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_the_bench_stack_shares_no_port_or_directory_with_the_others() -> None:
    bench, run = bench_config(), StackConfig.from_env({})
    tests = StackConfig.from_env({"TOLLGATE_PORT_OFFSET": "300"})  # as pytest_plugin.py sets it
    assert bench.state_dir.name == ".stack-bench" and bench.state_dir != run.state_dir
    assert set(bench.ports.values()).isdisjoint(run.ports.values())
    assert set(bench.ports.values()).isdisjoint(tests.ports.values())
    assert bench.cache_dir == run.cache_dir  # downloads are shared


def test_the_environment_still_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOLLGATE_PORT_OFFSET", "1000")
    monkeypatch.setenv("TOLLGATE_STACK_DIR", str(tmp_path))
    cfg = bench_config()
    assert cfg.ports["postgres"] == 16432 and str(cfg.state_dir) == str(tmp_path)
