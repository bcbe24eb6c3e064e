"""The marker shell around update commands, run by real shells (dash, bash, busybox sh): the exit status
it leaves, and what the status and stop scripts read from it. The paths live in pytest's tmp_path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.engine.host.change import ended_with, status_script, stop_script, wrap

SHELLS = [s for s in (["dash"], ["bash"], ["busybox", "sh"]) if shutil.which(s[0])]
pytestmark = pytest.mark.skipif(not SHELLS, reason="needs a POSIX shell")


def sh(shell: list[str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell, "-c", script], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(params=SHELLS, ids=lambda s: s[0])
def shell(request: pytest.FixtureRequest) -> list[str]:
    return list(request.param)


def names(tmp_path: Path, step: int, run_id: str) -> tuple[str, str]:
    prefix = f"{tmp_path}/orchestrator-R1-web1-update"
    return f"{prefix}{step}.pid", f"{prefix}{step}-{run_id}.rc"


@pytest.mark.parametrize("code", [0, 1, 7])
def test_a_command_that_ends_on_its_own_leaves_its_status_and_no_pid_file(
    shell: list[str], tmp_path: Path, code: int
) -> None:
    pid, rc = names(tmp_path, 0, "a1")
    ran = sh(shell, wrap(f"echo it ran; exit {code}", pid, rc))
    assert ran.returncode == code and "it ran" in ran.stdout
    assert not Path(pid).exists()
    assert Path(rc).read_text().strip() == str(code)
    for script in (status_script(pid, rc), stop_script(pid, rc)):
        assert ended_with(sh(shell, script).stdout) == code


def test_an_earlier_starts_status_is_never_read_for_a_later_one(shell: list[str], tmp_path: Path) -> None:
    pid, first = names(tmp_path, 0, "first")
    assert sh(shell, wrap("true", pid, first)).returncode == 0
    _, later = names(tmp_path, 0, "later")
    # The later start never ran (its worker died between the marker and the command): nothing to read.
    assert ended_with(sh(shell, stop_script(pid, later)).stdout) is None
    assert "no leftover command" in sh(shell, stop_script(pid, later)).stdout


def test_the_next_step_removes_the_status_files_of_earlier_ones(shell: list[str], tmp_path: Path) -> None:
    pid0, rc0 = names(tmp_path, 0, "a")
    pid1, rc1 = names(tmp_path, 1, "b")
    sh(shell, wrap("true", pid0, rc0))
    assert Path(rc0).exists()
    sh(shell, wrap("true", pid1, rc1))
    assert not Path(rc0).exists() and Path(rc1).exists()


def test_a_command_still_running_is_stopped_not_read(shell: list[str], tmp_path: Path) -> None:
    pid, rc = names(tmp_path, 0, "run")
    running = subprocess.Popen(
        [*shell, "-c", wrap("sleep 30", pid, rc)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        for _ in range(100):
            if Path(pid).exists() and Path(pid).read_text().strip():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert "still running" in sh(shell, status_script(pid, rc)).stdout
        stopped = sh(shell, stop_script(pid, rc, wait=5)).stdout
        assert "stopped group" in stopped or "killed group" in stopped, stopped
        assert ended_with(stopped) is None
        running.wait(10)
    finally:
        running.kill()
    assert not Path(rc).exists(), "a stopped command must leave no status that could be read as its end"


def test_a_status_file_that_is_not_a_number_is_no_status(shell: list[str], tmp_path: Path) -> None:
    pid, rc = names(tmp_path, 0, "odd")
    Path(rc).write_text("0; rm -rf /\n")
    assert ended_with(sh(shell, status_script(pid, rc)).stdout) is None
