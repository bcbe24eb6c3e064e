"""The command line on bad input: exit 2 with one readable line, never a traceback.

A few cases run the installed console script, exactly what an operator sees; the rest call
``orchestrator.cli.main`` (which turns errors into exit codes) in-process, which is the same code
without the second or so of imports per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli, main
from tests.unit.fakes import GOOD_INVENTORY, GOOD_PLAYBOOK, marked_line, write_inputs

ORCHESTRATOR = Path(sys.executable).with_name("orchestrator")
Invoke = Callable[..., tuple[int, str, str]]  # (exit code, stdout, stderr)


def run(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
    """The console script in a narrow terminal: the one error line must not be wrapped to fit it."""
    env = {**os.environ, "COLUMNS": "60", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(ORCHESTRATOR), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def call(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Invoke:
    def invoke(*args: str | Path) -> tuple[int, str, str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["orchestrator", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def one_error_line(result: tuple[int, str, str], prefix: str) -> str:
    code, out, err = result
    assert code == 2, result
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_validate_a_bad_playbook_exits_2_with_one_line(tmp_path: Path) -> None:
    playbook = GOOD_PLAYBOOK.replace('batches: [1, "50%"]', 'batches: [1, "150%"]').replace(
        "halt}", "halt}  # <-"
    )
    book, inv = write_inputs(tmp_path, playbook=playbook)
    line = one_error_line(
        run("validate", book, "-i", inv, cwd=tmp_path), f"error: {book}:{marked_line(playbook)}: "
    )
    problem, _, fix = line.partition("; ")
    assert "batch size '150%' is not valid" in problem
    assert "a number >= 1 or a percentage" in fix


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "playbook.yaml"], "Missing option '-i' / '--inventory'"),
        (["deploy", "playbook.yaml"], "No such command 'deploy'"),
    ],
    ids=["missing -i", "unknown command"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    write_inputs(tmp_path)
    code, _, err = run(*args, cwd=tmp_path)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_validate_a_bad_inventory_exits_2_with_one_line(tmp_path: Path, call: Invoke) -> None:
    inventory = GOOD_INVENTORY.replace("keys/known_hosts}", "keys/known_host}  # <-")
    write_inputs(tmp_path, inventory=inventory)
    result = call("validate", "playbook.yaml", "-i", "inventory.yaml")
    line = one_error_line(result, f"error: inventory.yaml:{marked_line(inventory)}: ")
    assert f"ssh known hosts file {tmp_path}/keys/known_host does not exist; create it" in line


def test_validate_a_missing_file_exits_2(tmp_path: Path, call: Invoke) -> None:
    write_inputs(tmp_path)
    result = call("validate", "nope.yaml", "-i", "inventory.yaml")
    one_error_line(result, "error: nope.yaml: file not found; ")


def test_plan_with_an_unknown_host_exits_2(tmp_path: Path, call: Invoke) -> None:
    write_inputs(tmp_path)
    result = call("plan", "playbook.yaml", "-i", "inventory.yaml", "--hosts", "web1,web9")
    one_error_line(result, "error: --hosts: host 'web9' is not in pool 'web'; one of: web1, web2, web3")


def test_validate_and_plan_a_good_playbook(tmp_path: Path, call: Invoke) -> None:
    write_inputs(tmp_path)
    code, out, err = call("validate", "playbook.yaml", "-i", "inventory.yaml")
    assert (code, err) == (0, "")
    assert out.strip() == "ok: playbook.yaml on pool web: 3 hosts, 2 batches"
    code, out, err = call("plan", "playbook.yaml", "-i", "inventory.yaml", "--hosts", "web3,web2")
    assert (code, err) == (0, "")
    assert "Plan: web-v2 on pool web: 2 hosts in 2 batches" in out
    assert "  batch 1: web2\n  batch 2: web3\n" in out
    assert "/opt/app/bin/install /tmp/app-2.tar.gz" in out


def test_plan_prints_every_batch(tmp_path: Path, call: Invoke) -> None:
    write_inputs(tmp_path)
    code, out, _ = call("plan", "playbook.yaml", "-i", "inventory.yaml")
    assert code == 0
    assert "  batch 1: web1\n  batch 2: web2, web3\n" in out


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("validate", ["PLAYBOOK", "--inventory"]),
        ("plan", ["PLAYBOOK", "--inventory", "--hosts"]),
        ("run", ["PLAYBOOK", "--inventory", "--hosts"]),
        ("worker", ["--concurrency", "--loglevel"]),
    ],
)
def test_help(command: str, words: list[str]) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator {command} ")
    for word in words:
        assert word in result.output


def test_top_level_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["-h"], prog_name="orchestrator")
    assert result.exit_code == 0
    for command in ("validate", "plan", "run", "worker"):
        assert f"  {command} " in result.output


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (["run", "playbook.yaml", "-i", "inventory.yaml", "--as", "alice;id"], "error: --as: "),
        (["run", "playbook.yaml", "-i", "inventory.yaml", "--change", "CHG 1;rm"], "error: --change: "),
        (["run", "playbook.yaml", "-i", "inventory.yaml", "--reason", "a\nb"], "error: --reason: "),
        (["abort", "R1", "--reason", "  "], "error: --reason: abort needs a reason"),
        (["rollback", "R1"], "error: orchestrator rollback: Missing option '--reason'"),
        (["reject", "R1", "--as", "bob"], "error: orchestrator reject: Missing option '--reason'"),
        (["audit", "export", "--since", "yesterday"], "error: --since: "),
        (
            ["audit", "prune", "--before", "2026-01-01"],
            "error: orchestrator audit prune: Missing option '--reason'",
        ),
    ],
    ids=[
        "bad actor",
        "bad ticket",
        "reason with a newline",
        "blank reason",
        "rollback",
        "reject",
        "since",
        "prune",
    ],
)
def test_who_and_why_are_checked_before_anything_is_touched(
    tmp_path: Path, call: Invoke, monkeypatch: pytest.MonkeyPatch, args: list[str], prefix: str
) -> None:
    write_inputs(tmp_path)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    one_error_line(call(*args), prefix)
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.db-wal"))
