"""The alerts a first event must raise do fire on it: promtool (Debian's prometheus
package) evaluates deploy/helm/tollgate/files/alerts.yml against series as the services export
them, from 0 at the first scrape."""

import subprocess
from pathlib import Path

from tollgate_devstack.infra import debian_command

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "tollgate" / "files"


def test_the_first_dead_letter_unprocessable_event_and_refused_report_each_fire() -> None:
    promtool = debian_command("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", str(PROMETHEUS / "alerts.test.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_are_valid_prometheus_rules() -> None:
    promtool = debian_command("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
