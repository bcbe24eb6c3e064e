"""The long fuzz of the YAML loader: load_yaml_bytes, then validate as a Playbook and an Inventory.

Skipped unless ORCH_FUZZ_SECONDS is set: the module then runs for that many seconds, split between
hypothesis (structured YAML-ish inputs, blow-ups, mutations of playbooks/, see yaml_inputs) and, if
it is installed, atheris (coverage-guided, raw bytes, seeded with the same files and the unit table).

    ORCH_FUZZ_SECONDS=600 .venv/bin/pytest -s -p no:cacheprovider tests/fuzz

The property is ``yaml_inputs.check``. A failure is reported once per kind (the input hypothesis
shrank it to, or the first atheris found) and the fuzz carries on; the test fails at the end if any
was found. Every finding becomes a row of the table in tests/unit/test_yamlfile.py, marked
``# found by fuzzing``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz import yaml_inputs
from tests.fuzz.yaml_inputs import STATS, PropertyFailed, signature

SECONDS = float(os.environ.get("ORCH_FUZZ_SECONDS") or 0)
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
SHARE = 0.5 if HAVE_ATHERIS else 1.0  # of SECONDS, for each fuzzer

pytestmark = [
    pytest.mark.skipif(not SECONDS, reason="set ORCH_FUZZ_SECONDS to run the long fuzz"),
    pytest.mark.timeout(int(SECONDS * SHARE) + 900),  # the project's 600 s would end a long run midway
]


OUT = Path(os.environ.get("ORCH_FUZZ_OUT") or tempfile.mkdtemp(prefix="orch-fuzz-"))


def _report(name: str, findings: dict[str, tuple[str, bytes]], extra: str = "") -> None:
    """Print the counters and each finding; each finding's input goes whole to a file under OUT."""
    print(f"\n{name}: {extra}\n  {STATS}")
    OUT.mkdir(parents=True, exist_ok=True)
    for n, (message, data) in enumerate(findings.values(), 1):
        saved = OUT / f"{name}-{n}.yaml"
        saved.write_bytes(data)
        (OUT / f"{name}-{n}.txt").write_text(message)
        print(f"  FINDING {message[:600]}\n    input ({len(data)} bytes, in {saved}) {data[:300]!r}")


def test_hypothesis_until_the_time_is_up() -> None:
    deadline = time.monotonic() + SECONDS * SHARE
    findings: dict[str, tuple[str, bytes]] = {}  # signature: (message, shrunk input)
    failed: list[tuple[str, str, bytes]] = []

    @settings(
        max_examples=2_000,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )
    @given(yaml_inputs.all_inputs)
    def one(data: bytes) -> None:
        try:
            yaml_inputs.check(data)
        except BaseException as exc:
            kind = exc.kind if isinstance(exc, PropertyFailed) else f"{type(exc).__name__} escaped"
            sig = signature(kind, str(exc))
            if sig in findings:
                return  # known: look for something else
            failed.append((sig, f"{kind}: {exc}", data))
            raise

    rounds = 0
    started = time.monotonic()
    try:
        while time.monotonic() < deadline:
            rounds += 1
            failed.clear()
            try:
                one()
            except Exception:
                if not failed:  # not the property: hypothesis itself, or the harness
                    raise
                sig, message, data = failed[-1]  # hypothesis runs the shrunk example last
                findings.setdefault(sig, (message, data))
            print(f"hypothesis round {rounds} at {time.monotonic() - started:.0f} s: {STATS}", flush=True)
    finally:
        _report("hypothesis", findings, f"{rounds} rounds")
    assert not findings, list(findings)


ATHERIS_HARNESS = Path(__file__).with_name("atheris_yaml.py")


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris is not installed")
def test_atheris_until_the_time_is_up(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = [text.encode() for text in yaml_inputs.EXAMPLES] + _table_rows()
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    findings_file = tmp_path / "findings.jsonl"
    seconds = max(1, int(SECONDS * SHARE))
    done = subprocess.run(
        [
            sys.executable,
            str(ATHERIS_HARNESS),
            str(corpus),
            f"-max_total_time={seconds}",
            "-timeout=10",  # libFuzzer's own hang detector; check() itself fails past 2 s
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
        ],
        env={**os.environ, "ORCH_FUZZ_FINDINGS": str(findings_file), "PYTHONPATH": str(yaml_inputs.REPO)},
        capture_output=True,
        text=True,
        timeout=seconds + 600,
        check=False,
    )
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    stats_file = findings_file.with_suffix(".stats")
    stats = stats_file.read_text() if stats_file.exists() else "no stats"
    findings = {}
    if findings_file.exists():
        for row in findings_file.read_text().splitlines():
            finding = json.loads(row)
            findings.setdefault(
                finding["signature"], (finding["message"], base64.b64decode(finding["input"]))
            )
    executed = runs.group(1) if runs else "?"
    _report("atheris", findings, f"exit {done.returncode}, {executed} runs; in its process: {stats}")
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert done.returncode == 0 and not crashes, (done.returncode, crashes, done.stderr[-3000:])
    assert not findings, list(findings)


def _table_rows() -> list[bytes]:
    from tests.unit.test_yamlfile import BAD  # the inputs that once broke something

    return [row.values[0].data for row in BAD if len(row.values[0].data) < 65536]
