"""SSHRemote and SSHPool against a real OpenSSH server on a loopback address."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.remote.base import SSHTarget
from orchestrator.adapters.remote.ssh import OUTPUT_LIMIT, SSHPool, SSHRemote
from orchestrator.errors import CommandTimeout, HostKeyError, RemoteError
from orchestrator.lab.sshd import SshdProcess, free_port, generate_keypair, running_sshd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ADDRESS = "127.0.0.2"


@dataclasses.dataclass
class Lab:
    sshd: SshdProcess
    target: SSHTarget
    workdir: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("ssh")
    with running_sshd(workdir, host="web1", address=ADDRESS) as host:
        yield Lab(host.sshd, host.target, workdir)


@pytest.fixture
def remote(lab: Lab) -> Iterator[SSHRemote]:
    r = SSHRemote.connect(lab.target)
    try:
        yield r
    finally:
        r.close()


def test_exit_codes_and_streams(remote: SSHRemote) -> None:
    ok = remote.run("echo out; echo err >&2", timeout=10)
    assert (ok.exit_code, ok.stdout, ok.stderr, ok.ok) == (0, "out\n", "err\n", True)
    failed = remote.run("echo partial; echo 'no such file' >&2; exit 3", timeout=10)
    assert failed.exit_code == 3
    assert not failed.ok
    assert failed.stdout == "partial\n"
    assert failed.tail() == "no such file"
    assert failed.duration > 0


def test_stdin_is_closed_so_readers_do_not_hang(remote: SSHRemote) -> None:
    assert remote.run("cat; echo done", timeout=10).stdout == "done\n"


def test_large_output_on_both_streams_is_read_and_trimmed(remote: SSHRemote) -> None:
    # 3 MB on stdout and 2 MB on stderr at once: reading only one stream would stall the other.
    command = (
        "head -c 2000000 /dev/zero | tr '\\0' e >&2 & head -c 3000000 /dev/zero | tr '\\0' o; wait; echo END"
    )
    result = remote.run(command, timeout=60)
    assert result.exit_code == 0
    assert result.stdout.endswith("o" * 1000 + "END\n")
    assert "earlier bytes not kept" in result.stdout
    assert len(result.stdout) < OUTPUT_LIMIT + 100
    assert result.stderr.endswith("e" * 1000)
    assert len(result.stderr) < OUTPUT_LIMIT + 100


def test_timeout_raises_and_connection_stays_usable(remote: SSHRemote, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(CommandTimeout) as info:
        remote.run(f"echo started; echo $$ > {pid_file}; exec sleep 30", timeout=0.5)
    _kill_pid_in(pid_file)
    message = str(info.value)
    assert "web1" in message and "exec sleep 30" in message and "0.5 s" in message
    assert "started" in message
    assert info.value.host == "web1"
    assert not info.value.transient
    assert remote.run("echo again", timeout=10).stdout == "again\n"


def test_command_killed_by_signal_has_no_exit_status(remote: SSHRemote) -> None:
    result = remote.run("kill -9 $$", timeout=10)
    assert result.exit_code == -1
    assert not result.ok
    assert remote.is_active()


def test_concurrent_commands_on_one_connection(remote: SSHRemote) -> None:
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = remote.run(f"sleep 0.2; echo {i}", timeout=30).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {i: f"{i}\n" for i in range(8)}


def test_upload_with_mode(remote: SSHRemote, lab: Lab, tmp_path: Path) -> None:
    local = tmp_path / "app.sh"
    local.write_bytes(b"#!/bin/sh\necho v2\n" + bytes(range(256)) * 4000)
    dest = lab.workdir / "uploaded" / "app.sh"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text("old")
    remote.upload(local, str(dest), mode=0o750)
    assert dest.read_bytes() == local.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o750
    assert not Path(f"{dest}.partial").exists()
    # The SFTP session is reused for the next upload.
    remote.upload(local, str(dest))
    assert remote.run(f"head -2 {dest}", timeout=10).stdout.endswith("echo v2\n")


def test_upload_errors(remote: SSHRemote, lab: Lab, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="local file does not exist") as info:
        remote.upload(tmp_path / "missing", "/tmp/x")
    assert str(tmp_path / "missing") in str(info.value)
    local = tmp_path / "f"
    local.write_text("x")
    with pytest.raises(RemoteError) as info:
        remote.upload(local, str(lab.workdir / "no" / "such" / "dir" / "f"))
    assert "web1" in str(info.value) and not info.value.transient
    assert remote.run("true", timeout=10).ok


def test_unknown_host_key_is_refused(lab: Lab) -> None:
    empty = lab.workdir / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as info:
        SSHRemote.connect(dataclasses.replace(lab.target, known_hosts=empty))
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(lab.sshd.host_key) + ".pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    message = str(info.value)
    assert f"[{ADDRESS}]:{lab.target.port}" in message
    assert fingerprint in message
    assert f"ssh-keyscan -p {lab.target.port} {ADDRESS} >> {empty}" in message
    assert not info.value.transient
    assert empty.read_text() == ""  # never added


def test_changed_host_key_is_refused(lab: Lab) -> None:
    other_pub = generate_keypair(lab.workdir / "other_host_key")
    wrong = lab.workdir / "wrong_known_hosts"
    wrong.write_text(f"[{ADDRESS}]:{lab.target.port} {' '.join(other_pub.split()[:2])}\n")
    with pytest.raises(HostKeyError) as info:
        SSHRemote.connect(dataclasses.replace(lab.target, known_hosts=wrong))
    message = str(info.value)
    assert "CHANGED" in message and "attack" in message and "web1" in message
    assert message.count("SHA256:") == 2
    assert not info.value.transient


def test_missing_files_are_named(lab: Lab) -> None:
    missing = lab.workdir / "nope"
    for target in (
        dataclasses.replace(lab.target, known_hosts=missing),
        dataclasses.replace(lab.target, key_file=missing),
    ):
        with pytest.raises(RemoteError, match=str(missing)) as info:
            SSHRemote.connect(target)
        assert not info.value.transient


def test_refused_key_is_not_transient(lab: Lab) -> None:
    generate_keypair(lab.workdir / "stranger_key")
    with pytest.raises(RemoteError, match="refused key") as info:
        SSHRemote.connect(dataclasses.replace(lab.target, key_file=lab.workdir / "stranger_key"))
    assert not info.value.transient


def test_connection_refused_is_transient(lab: Lab) -> None:
    closed = dataclasses.replace(lab.target, port=free_port(ADDRESS))
    with pytest.raises(RemoteError, match="connection refused") as info:
        SSHRemote.connect(closed)
    assert info.value.transient
    assert info.value.host == "web1"


def test_pool_reuses_and_reconnects(lab: Lab) -> None:
    with SSHPool() as pool:
        first = pool.get(lab.target)
        assert pool.get(lab.target) is first
        pool.discard("web1")
        assert not first.is_active()
        second = pool.get(lab.target)
        assert second is not first
        assert second.run("echo hi", timeout=10).stdout == "hi\n"
        second.close()  # a dead connection is replaced on the next get
        third = pool.get(lab.target)
        assert third is not second and third.is_active()
        pool.discard(lab.target)
        assert not third.is_active()
        fourth = pool.get(lab.target)
    assert not fourth.is_active()  # close_all on exit


def test_pool_connects_once_under_concurrency(lab: Lab) -> None:
    with SSHPool() as pool:
        got: list[SSHRemote] = []
        threads = [threading.Thread(target=lambda: got.append(pool.get(lab.target))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(got) == 6
        live = {id(r) for r in got if r.is_active()}
        assert live == {id(pool.get(lab.target))}


def _kill_pid_in(path: Path) -> None:
    """Kill the leftover remote command whose pid it wrote (sshd does not kill it when the channel closes)."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text()), signal.SIGKILL)


def test_connection_lost_mid_command_is_not_transient(lab: Lab, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with SSHPool() as pool:
        remote = pool.get(lab.target)
        # $PPID is the per-connection sshd process: killing it drops the TCP connection.
        with pytest.raises(RemoteError) as info:
            remote.run(f"echo $$ > {pid_file}; kill -9 $PPID; exec sleep 20", timeout=30)
        _kill_pid_in(pid_file)
        assert not isinstance(info.value, CommandTimeout)
        assert not info.value.transient
        assert "kill -9 $PPID" in str(info.value) and "lost" in str(info.value)
        assert not remote.is_active()
        with pytest.raises(RemoteError) as again:
            remote.run("true", timeout=5)
        assert again.value.transient  # nothing was started
        assert pool.get(lab.target).run("echo back", timeout=10).stdout == "back\n"


def test_session_sshd_killed_from_outside_mid_command(lab: Lab, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    remote = SSHRemote.connect(lab.target)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            remote.run(f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 20", timeout=30)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        for _ in range(500):
            if pid_file.exists():
                break
            worker.join(timeout=0.02)
        command_pid = int(pid_file.read_text())
        session_pid = int(Path(f"/proc/{command_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert session_pid in lab.sshd.session_pids()
        os.kill(session_pid, signal.SIGKILL)
        worker.join(timeout=30)
        assert len(errors) == 1
        assert isinstance(errors[0], RemoteError) and not isinstance(errors[0], CommandTimeout)
        assert not errors[0].transient
        assert "echo $$" in str(errors[0]) and "web1" in str(errors[0])
    finally:
        _kill_pid_in(pid_file)
        remote.close()
        worker.join(timeout=30)


def test_hung_connection_fails_fast_and_pool_reconnects(lab: Lab) -> None:
    # A frozen per-connection sshd looks like a VM reverted under an open session: nothing answers.
    target = dataclasses.replace(lab.target, connect_timeout=0.5)
    with SSHPool() as pool:
        remote = pool.get(target)
        session_pid = int(remote.run("echo $PPID", timeout=10).stdout)
        os.kill(session_pid, signal.SIGSTOP)
        try:
            with pytest.raises(RemoteError) as info:
                remote.run("true", timeout=10)
            assert info.value.transient and "did not start" in str(info.value)
            assert not remote.is_active()
            fresh = pool.get(target)
            assert fresh is not remote
            assert fresh.run("echo fresh", timeout=10).stdout == "fresh\n"
        finally:
            # The pool may have closed the session already, so the process may be gone.
            for sig in (signal.SIGKILL, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(session_pid, sig)
