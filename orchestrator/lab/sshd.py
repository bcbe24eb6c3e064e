"""A real OpenSSH server as a plain process, for integration tests and the loopback lab.

Each SshdProcess has its own host key, config, authorized_keys, pid file and log in its workdir, and
listens on one loopback address:port, so several can run side by side as separate "hosts".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.remote.base import SSHTarget
from orchestrator.errors import ConfigError

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def generate_keypair(path: Path) -> str:
    """Create an ed25519 key pair at path (+ path.pub), replacing any old one; return the public line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    # ssh-keygen refuses to overwrite without a prompt, hence the unlink above.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def free_port(address: str) -> int:
    """A port that was free on address a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


class SshdProcess:
    def __init__(self, workdir: Path, *, address: str, port: int, authorized_keys: list[str]) -> None:
        self.workdir = workdir
        self.address = address
        self.port = port
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_key = workdir / "ssh_host_ed25519_key"
        self.config = workdir / "sshd_config"
        self.authorized_keys = workdir / "authorized_keys"
        self.pid_file = workdir / "sshd.pid"
        self.log = workdir / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

        host_pub = generate_keypair(self.host_key)
        key_type, key_b64 = host_pub.split()[:2]
        self.known_hosts_line = f"{known_hosts_name(address, port)} {key_type} {key_b64}"
        self.authorized_keys.write_text("".join(line.strip() + "\n" for line in authorized_keys))
        self.config.write_text(self._config_text())

    def _config_text(self) -> str:
        return "\n".join(
            [
                f"ListenAddress {self.address}:{self.port}",
                f"HostKey {self.host_key}",
                f"PidFile {self.pid_file}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "UseDNS no",
                # Tests open many channels on one connection and many connections at once.
                "MaxSessions 64",
                "MaxStartups 64",
                "Subsystem sftp internal-sftp",
                # bash -c sources ~/.bashrc when run by sshd unless it believes it is a nested shell;
                # root's .bashrc on our machines is slow (pyenv init: ~150 ms per command).
                "SetEnv SHLVL=1",
                "",
            ]
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self.log.unlink(missing_ok=True)
        # -D keeps the listener as our child so that stop() can wait for it.
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise ConfigError(
                    f"sshd for {self.address}:{self.port} exited with code {self._proc.returncode} at "
                    f"start; its log {self.log} says: {self._log_tail()}"
                )
            if _port_open(self.address, self.port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"sshd for {self.address}:{self.port} did not accept connections within "
                    f"{START_TIMEOUT:.0f} s; its log {self.log} says: {self._log_tail()}"
                )
            time.sleep(0.02)

    def session_pids(self) -> list[int]:
        """Pids of the per-connection sshd processes (and their children) of this server."""
        if self._proc is None:
            return []
        return _descendants(self._proc.pid)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # Per-connection sshd processes call setsid(), so killing our process group misses them.
        sessions = _descendants(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def __enter__(self) -> SshdProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class LabHost:
    sshd: SshdProcess
    target: SSHTarget


@contextlib.contextmanager
def running_sshd(
    workdir: Path, *, host: str, address: str, port: int = 0, user: str = "root"
) -> Iterator[LabHost]:
    """An sshd on address (a free port unless given) with a fresh client key and a known_hosts file
    that trusts it: everything an SSHTarget needs. Stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    client_pub = generate_keypair(workdir / "client_key")
    port = port or free_port(address)
    sshd = SshdProcess(workdir / "sshd", address=address, port=port, authorized_keys=[client_pub])
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    target = SSHTarget(
        host=host,
        address=address,
        port=port,
        user=user,
        key_file=workdir / "client_key",
        known_hosts=known_hosts,
        connect_timeout=5.0,
    )
    try:
        sshd.start()
        yield LabHost(sshd, target)
    finally:
        sshd.stop()


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces: split after its closing parenthesis.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
