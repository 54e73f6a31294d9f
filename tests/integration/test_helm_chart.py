"""The Helm chart, checked offline: `helm lint`; `helm template` with the default values
and with every optional feature on (ci/full-values.yaml), for the oldest and the newest
Kubernetes minor the chart supports; every rendered object validated strictly against
that version's schema (kubernetes-validate); and the chart's own rules over what it
renders: hardened pods, probes and limits everywhere, a PDB per Deployment, no Secret,
admin listeners kept inside."""

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.infra import helm_binary
from tollgate_shared.acls import acls_for
from tollgate_shared.topics import SERVICES, describe, describe_acls, service_specs, spec_of

CHART = REPO_ROOT / "deploy" / "helm" / "tollgate"
VALUE_SETS = {
    "defaults": [],
    "full": ["-f", str(CHART / "ci" / "full-values.yaml")],
    "kafka-users": ["--set", "topics.job.acls.users.ledger=prod-ledger"],
}
OLDEST, NEWEST = "1.28.0", "1.37.0"
# Kinds of operators the chart can drive (KEDA, the Prometheus Operator, Strimzi): their
# schemas are theirs, not Kubernetes'; the rules below still read them.
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule", "KafkaTopic", "KafkaUser"}


@cache
def helm() -> str:
    return str(helm_binary(StackConfig.from_env()))


@cache
def render(values: str, kube_version: str = NEWEST) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [helm(), "template", "tg", str(CHART), "--kube-version", kube_version, *VALUE_SETS[values]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pods(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_passes(values: str) -> None:
    run = subprocess.run([helm(), "lint", "--strict", str(CHART), *VALUE_SETS[values]], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("kube_version", [OLDEST, NEWEST])
@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_object_is_valid_for_the_oldest_and_newest_kubernetes(values: str, kube_version: str) -> None:
    checked = 0
    for o in render(values, kube_version):
        if o["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(o, kube_version, strict=True)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_pod_is_hardened_with_limits_and_no_service_account_token(values: str) -> None:
    for where, spec in pods(render(values)):
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert not c["image"].endswith(":latest"), where


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_service_has_probes_a_drain_and_a_disruption_budget(values: str) -> None:
    objects = render(values)
    budgets = [p["spec"]["selector"]["matchLabels"] for p in of_kind(objects, "PodDisruptionBudget")]
    deployments = of_kind(objects, "Deployment")
    assert len(deployments) == len(SERVICES)
    for d in deployments:
        (c,) = d["spec"]["template"]["spec"]["containers"]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c), d["metadata"]["name"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["lifecycle"]["preStop"], d["metadata"]["name"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert any(b.items() <= labels.items() for b in budgets), f"no PDB selects {d['metadata']['name']}"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_secret_is_rendered_and_no_setting_carries_one(values: str) -> None:
    objects = render(values)
    assert of_kind(objects, "Secret") == []
    for where, spec in pods(objects):
        for c in spec["containers"]:
            for env in c.get("env", []):
                name = env["name"]
                if any(s in name for s in ("PASSWORD", "TOKEN", "SECRET", "DATABASE_URL")):
                    # Only ever a reference to a Secret (Strimzi's, for a KafkaUser's password).
                    assert "value" not in env and env["valueFrom"]["secretKeyRef"], (where, name)


def test_admin_listeners_are_never_in_a_public_service_and_only_the_exposed_are_open_to_all() -> None:
    objects = render("defaults")
    for s in of_kind(objects, "Service"):
        ports = {p["name"] for p in s["spec"]["ports"]}
        assert ports == ({"admin"} if s["metadata"]["name"].endswith("-admin") else {"http"}), s["metadata"]["name"]
    open_to_all = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        public, admin = policy["spec"]["ingress"]
        assert [p["port"] for p in admin["ports"]] == ["admin"] and admin["from"], policy["metadata"]["name"]
        if "from" not in public:
            open_to_all.add(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    assert open_to_all == {"checkout", "keys", "portal"}


def test_services_never_migrate_on_start_when_the_job_does() -> None:
    objects = render("defaults")
    jobs = {j["metadata"]["name"] for j in of_kind(objects, "Job")}
    assert {f"tg-tollgate-migrate-{s}" for s in SERVICES} | {"tg-tollgate-topics"} <= jobs
    for d in of_kind(objects, "Deployment"):
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert [v for k, v in env.items() if k.endswith("_MIGRATE_ON_START")] == ["false"]


def test_the_prometheus_rule_is_the_file_promtool_tests() -> None:
    (rule,) = of_kind(render("full"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yml").read_text())
    (monitor,) = of_kind(render("full"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"


def test_strimzi_topics_are_the_catalog_and_the_catalog_file_is_current() -> None:
    assert (CHART / "files" / "topics.yaml").read_text() == describe(), (
        "run: python -m tollgate_shared.topics --describe"
    )
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(render("full"), "KafkaTopic")}
    catalog = yaml.safe_load(describe())["topics"]
    assert set(topics) == {t["name"] for t in catalog}
    for t in catalog:
        assert (topics[t["name"]]["partitions"], topics[t["name"]]["replicas"]) == (t["partitions"], t["replicas"])
        assert topics[t["name"]]["config"] == t["config"]


def test_strimzi_users_hold_each_services_acls_and_the_services_log_in_as_them() -> None:
    assert (CHART / "files" / "acls.yaml").read_text() == describe_acls(), (
        "run: python -m tollgate_shared.topics --describe-acls"
    )
    objects = render("full")
    # Strimzi 1.0 serves only v1 of its resources.
    assert {o["apiVersion"] for o in objects if o["kind"] in ("KafkaUser", "KafkaTopic")} == {"kafka.strimzi.io/v1"}
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind(objects, "KafkaUser")}
    assert set(users) == {f"tg-tollgate-{spec.name}-kafka" for spec in service_specs()}
    for spec in service_specs():
        user = users[f"tg-tollgate-{spec.name}-kafka"]
        assert user["authentication"] == {"type": "scram-sha-512"}
        granted = {
            (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], op)
            for a in user["authorization"]["acls"]
            for op in a["operations"]
        }
        wanted = {(a.resource, a.name, "prefix" if a.prefixed else "literal", a.operation) for a in acls_for(spec)}
        assert granted == wanted, spec.name
    for d in of_kind(objects, "Deployment"):
        env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        (username,) = [e["value"] for name, e in env.items() if name.endswith("_KAFKA_SASL_USERNAME")]
        (password,) = [
            e["valueFrom"]["secretKeyRef"] for name, e in env.items() if name.endswith("_KAFKA_SASL_PASSWORD")
        ]
        assert username in users and password == {"name": username, "key": "password"}, d["metadata"]["name"]
    # Without Strimzi, no KafkaUser, and each service's Secret names its Kafka user.
    assert of_kind(render("defaults"), "KafkaUser") == []
    for d in of_kind(render("defaults"), "Deployment"):
        assert not [e for e in d["spec"]["template"]["spec"]["containers"][0]["env"] if "KAFKA_SASL_USER" in e["name"]]


def test_keda_scales_each_consumer_on_the_groups_and_topics_it_really_has() -> None:
    for o in of_kind(render("full"), "ScaledObject"):
        service = o["spec"]["scaleTargetRef"]["name"].removeprefix("tg-tollgate-")
        spec = spec_of(service)
        real = {(f"{spec.name}.{s.name}", s.topic.name) for s in spec.subscriptions}
        rendered = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in o["spec"]["triggers"]}
        assert rendered <= real and rendered, service


def test_the_topics_job_grants_the_acls_and_its_command_runs(stack: dict[str, Any]) -> None:
    def command(values: str) -> list[str]:
        (job,) = [j for j in of_kind(render(values), "Job") if j["metadata"]["name"] == "tg-tollgate-topics"]
        return job["spec"]["template"]["spec"]["containers"][0]["command"]  # type: ignore[no-any-return]

    assert command("defaults") == ["python3", "-m", "tollgate_shared.topics", "--acls"]
    renamed = command("kafka-users")
    assert renamed[-1] == "--user=ledger=prod-ledger"
    # As the Job runs it, against a real broker with an authorizer (the stack's, as its super user).
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack["kafka"]}
    ran = subprocess.run([sys.executable, *renamed[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1].startswith("acls: ")
