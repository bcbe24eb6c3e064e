"""The change record end to end on the loopback farm (4 hosts, real HAProxy, a real sshd each) under
load: a rollout requested by alice under a change ticket, a canary, four eyes (alice may not approve
her own change; bob approves with a reason), host3 failing its checks and reverted, the rollout
halting; then the change report in HTML, JSON and Markdown, and `audit verify` passing over the signed
checkpoints exported outside the store."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.changereport.jsonform import validate
from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.lab.measure import under_load
from orchestrator.model.states import HostState, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import (
    cleanup,
    cli,
    orch_env,
    report,
    rollout_of,
    set_host_vars,
    start_run,
    the_rollout,
    wait_rollout,
    write_playbook,
)
from tests.e2e.test_report_browser import _missing_tools, chromium
from tests.e2e.test_report_browser import run as tool

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=4)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


@pytest.mark.timeout(240)
def test_a_rollout_leaves_a_change_record_an_auditor_accepts(farm: LoopbackFarm, tmp_path: Path) -> None:
    playbook = write_playbook(
        tmp_path,
        "change",
        artifact_var=True,
        strategy={"batches": [1, 1, 1, 1], "approve_after": [1], "four_eyes": True},
        stabilize={"interval": "200ms", "successes": 2, "timeout": "4s"},
    )
    set_host_vars(farm, {"host3": {"artifact": "app-2-broken.tar.gz"}}, artifact="app-2.tar.gz")
    env = orch_env(tmp_path, "change", broker=False)
    env["ORCH_LB_SAMPLE_EVERY"] = "0.25"
    env["ORCH_AUDIT_CHECKPOINT_EVERY"] = "16"
    store = Store(env["ORCH_DATABASE_URL"])
    run_args = ["--as", "alice", "--reason", "vendor regulatory update 2.0", "--change", "CHG-1234"]
    with under_load(farm.url, farm.haproxy.socket_path) as figures, cleanup(env) as procs:
        run = start_run(playbook, farm.inventory, env, tmp_path / "run.log", extra=run_args)
        procs.append(run)
        rollout_id = the_rollout(store).id
        wait_rollout(store, rollout_id, {RolloutState.AWAITING_APPROVAL}, 60)
        own = cli(["approve", rollout_id, "--as", "alice"], env)
        unexplained = cli(["reject", rollout_id, "--as", "bob"], env)
        approved = cli(["approve", rollout_id, "--as", "bob", "--reason", "canary healthy for 5 min"], env)
        code = run.wait(120)
    measured = figures()
    final = rollout_of(store, rollout_id)
    out = tmp_path / "out"
    out.mkdir()
    made = {
        f: cli(["report", rollout_id, "--format", f, "-o", str(out / f"report.{f}")], env)
        for f in ("html", "json", "md")
    }
    verified = cli(["audit", "verify"], env)
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    report(
        "change record",
        f"{measured.load.summary()}; run exit {code}, {final.state.value}; own approval: "
        f"{own.stderr.strip()}; reject without reason: {unexplained.stderr.strip()}; "
        f"availability: {json.dumps({k: v for k, v in doc['availability'].items() if k != 'series'})}; "
        f"audit: {doc['audit']['records']} records, checkpoint {bool(doc['audit']['checkpoint'])}; "
        f"verify: {verified.stdout.strip()} {verified.stderr.strip()}",
    )

    # four eyes and reasons, refused before anything changed
    assert own.returncode == 3 and "four eyes" in own.stderr, own.stderr
    assert unexplained.returncode == 2 and "--reason" in unexplained.stderr, unexplained.stderr
    assert approved.returncode == 0, approved.stderr
    # the rollout: host3 failed its checks, was reverted, and the rollout halted
    assert code == 1
    assert final.state is RolloutState.HALTED, final.reason
    states = {h.name: h.state for h in store.hosts(rollout_id)}
    assert states["host3"] is HostState.ROLLED_BACK, states
    assert measured.load.failed == 0, measured.load.failures()[:5]
    # the report, in three formats, says who, why, what, and how it went
    assert all(m.returncode == 0 for m in made.values()), {f: m.stderr for f, m in made.items()}
    validate(doc)
    assert doc["request"]["requested_by"] == "alice" and doc["request"]["change_ticket"] == "CHG-1234"
    assert doc["request"]["reason"] == "vendor regulatory update 2.0"
    assert len(doc["request"]["playbook"]["sha256"]) == 64
    (decision,) = doc["approval"]["decisions"]
    assert (decision["by"], decision["reason"]) == ("bob", "canary healthy for 5 min")
    assert doc["approval"]["four_eyes"] and doc["approval"]["approver_differs"] is True
    host3 = next(h for h in doc["implementation"]["hosts"] if h["name"] == "host3")
    updates = [s for s in host3["steps"] if s["step"].startswith("update[")]
    assert updates and all(s["command_sha256"] and len(s["command_sha256"]) == 64 for s in updates)
    assert any(s["output_sha256"] for s in updates)  # the commands (an upload has no output)
    assert {e["what"] for e in doc["fallback"]["events"] if e["host"] == "host3"} >= {"snapshot", "revert"}
    checks = doc["testing"]["checks"]
    assert any(
        c["host"] == "host3" and c["outcome"] == "failed" and "HTTP" in c["measured"]["seen"] for c in checks
    )
    assert any(
        c["host"] == "host3" and "after the revert" in c["check"] and c["outcome"] == "passed" for c in checks
    )
    availability = doc["availability"]
    assert availability["samples"] >= 8 and availability["servers"] == 4
    assert availability["lowest_in_service"] == 3  # one host out at a time, never below
    assert availability["seconds_below_floor"] == 0
    assert doc["audit"]["covered"] and doc["audit"]["records"] > 20
    assert html.count("<svg") >= 2
    # nothing fetched from anywhere (URLs in the text, such as a check's, are only words)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\((?!#)|<link|<script[^>]*src""", html)
    assert "CHG-1234" in markdown and "bob" in markdown
    # the real report prints in a real browser, with its pictures and the evidence in the text
    if not _missing_tools():
        pdf = out / "report.pdf"
        chromium([f"--print-to-pdf={pdf}", (out / "report.html").as_uri()], tmp_path / "profile")
        printed = tool("pdftotext", "-layout", str(pdf), "-")
        assert "CHG-1234" in printed and "canary healthy for 5 min" in printed and "host3" in printed
        assert int(re.search(r"Pages:\s+(\d+)", tool("pdfinfo", str(pdf)))[1]) >= 2  # type: ignore[index]
    # the log verifies against the checkpoints exported outside the store
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = list((Path(env["ORCH_HOME"]) / "audit" / "checkpoints").glob("*.checkpoint"))
    assert len(exported) >= 3, exported
