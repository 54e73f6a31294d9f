"""The alerting rules in deploy/helm/tollgate/files/alerts.yml name metrics and labels the services export.

A renamed metric or label would leave its alert silently never firing; this catches
that here rather than in an incident.
"""

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

# Importing the modules registers their metrics, as each service's start-up does.
from tollgate_checkout import metrics as _checkout  # noqa: F401
from tollgate_keys import metrics as _keys  # noqa: F401
from tollgate_notifier import metrics as _notifier  # noqa: F401
from tollgate_shared import consumer as _consumers  # noqa: F401
from tollgate_shared import outbox as _outbox  # noqa: F401
from tollgate_usage_sync import metrics as _usage_sync  # noqa: F401

RULES = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "tollgate" / "files" / "alerts.yml"
SELECTOR = re.compile(r"\b(tollgate_\w+)(?:\{([^}]*)\})?")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> dict[str, set[str]]:
    """Each exported tollgate series name, with the label names it carries."""
    series: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("tollgate_"):
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
            # A labelled metric no code has touched yet has no samples; its label names
            # are on the collector itself.
            labelnames = set(getattr(REGISTRY._names_to_collectors.get(family.name), "_labelnames", ()))
            for suffix in ("", *SERIES_SUFFIXES):
                series.setdefault(family.name + suffix, set()).update(labelnames)
    return series


def rules() -> list[dict[str, str]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_metric_and_label_an_alert_uses_is_exported(rule: dict[str, str]) -> None:
    series = exported()
    used = SELECTOR.findall(rule["expr"])
    assert used, "an alert on no Tollgate metric"
    for name, matchers in used:
        assert name in series, f"{name} is not exported"
        labels = {m.split("=")[0].strip() for m in matchers.split(",") if m.strip()}
        assert labels <= series[name] | {"le"}, f"{name} has no label {labels - series[name]}"
        by = re.findall(r"by \(([^)]*)\)", rule["expr"])
        grouped = {label.strip() for clause in by for label in clause.split(",")}
        # Grouping by what Prometheus adds at scrape time (namespace, pod) is fine too.
        assert grouped <= series[name] | {"le", "namespace", "pod"}, f"grouped by a label {name} lacks"


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
