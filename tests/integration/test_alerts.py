"""The alerting rules shipped with the chart: valid for Prometheus (`promtool check rules`), passing
their unit tests (`promtool test rules`: series in, expected alerts out, including a healthy case
where nothing fires), and written against metrics that orchestrator/metrics.py really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator import metrics

pytestmark = pytest.mark.integration

FILES = Path(__file__).resolve().parents[2] / "charts" / "orchestrator" / "files"
RULES = FILES / "alerts.yaml"
RULE_TESTS = FILES / "alerts_test.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: it comes with Debian's `prometheus` package; run `make deps` "
            "(or `apt-get install -y --no-install-recommends prometheus`; the service need not run)"
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        cwd=FILES,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_the_rules_are_valid() -> None:
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules}
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fired == alerts and quiet == alerts
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])


def test_the_rules_use_only_metrics_the_orchestrator_exports() -> None:
    source = Path(metrics.__file__).read_text()
    exported = set(re.findall(r'"(orchestrator_[a-z_]+)"', source))
    used = set(re.findall(r"\b(orchestrator_[a-z_]+)\b", RULES.read_text()))
    assert used, "no orchestrator metric in the rules"
    assert used <= exported, f"rules use metrics that metrics.py does not export: {sorted(used - exported)}"
