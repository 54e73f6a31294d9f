"""The AsyncAPI documents in docs/asyncapi/, checked by the official AsyncAPI CLI (npm
@asyncapi/cli), as a consumer's tooling would read them. Its usage metrics are off: a
test sends nothing anywhere."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.infra import asyncapi_cli

DOCS = sorted((REPO_ROOT / "docs" / "asyncapi").glob("*.yaml"))


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.stem)
def test_the_official_cli_finds_the_document_valid(document: Path, tmp_path: Path) -> None:
    quiet = tmp_path / "asyncapi-analytics.json"
    quiet.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "ci"}))
    env = os.environ | {"ASYNCAPI_METRICS_CONFIG_PATH": str(quiet), "CI": "true", "HOME": str(tmp_path)}
    run = subprocess.run(
        [str(asyncapi_cli(StackConfig.from_env())), "validate", str(document), "--fail-severity", "warn"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is valid" in run.stdout
    assert "metrics" not in run.stdout + run.stderr  # nothing was sent


def test_there_is_a_document_for_every_service() -> None:
    assert {p.stem for p in DOCS} == {"checkout", "ledger", "keys", "notifier", "usage-sync", "portal"}
