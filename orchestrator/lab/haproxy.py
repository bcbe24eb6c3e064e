"""A real HAProxy as a plain daemon process, for integration tests, the loopback end-to-end test and the lab.

Not part of the orchestrator's runtime: this module may wait (bounded) because it owns the process.

Configured for seamless reloads as production ones should be (measured 2026-12, HAProxy 2.6.12, a reload
every 250 ms under six clients of 150 ms requests):
- server states survive a reload: `server-state-file` in global, `load-server-state-from-file global`
  in defaults, and `reload()` saves `show servers state` into that file just before the new process
  starts. Without the saved file a server in `maint` comes back in service.
- the listening sockets are handed over: `expose-fd listeners` on the stats socket, `-x SOCKET` on the
  new process, so no connection is refused meanwhile.
- `option idle-close-on-response`: the old process keeps idle keep-alive connections open and answers
  their next request with `Connection: close`, instead of closing them while a client may be sending
  on them. Without it 1-3 requests in ~60 reloads failed (`RemoteDisconnected`: a reused connection
  closed without an answer, which Python's http.client does not retry); with it none did.
- `hard-stop-after 5s` bounds how long an old process may go on serving its last connections (the
  clients here send all the time, so they are gone within a request); a drain that follows a reload
  waits that long, because the old process routes with the server states it had.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.procs import alive, terminate

HAPROXY = "haproxy"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    port: int


class HAProxyProcess:
    """One HAProxy with one HTTP frontend, one backend and a runtime API socket at level admin."""

    def __init__(
        self,
        workdir: Path,
        *,
        frontend: tuple[str, int],
        backend: str,
        servers: list[Server],
        check_path: str = "/health",
        check_inter_ms: int = 200,
        rise: int = 2,
        fall: int = 2,
        retries: int = 3,
        redispatch: bool = True,
        prometheus: tuple[str, int] | None = None,
        timeout_server_ms: int = 30000,
        admin_tcp: tuple[str, int] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.frontend = frontend
        self.backend = backend
        self.servers = list(servers)
        self.check_path = check_path
        self.check_inter_ms = check_inter_ms
        self.rise = rise
        self.fall = fall
        self.retries = retries
        self.redispatch = redispatch
        self.prometheus = prometheus
        self.timeout_server_ms = timeout_server_ms
        # A second runtime API endpoint on TCP (level admin): only for loopback tests of the TCP variant.
        self.admin_tcp = admin_tcp
        self.socket_path = self.workdir / "haproxy.sock"
        self.pidfile = self.workdir / "haproxy.pid"
        self.config_path = self.workdir / "haproxy.cfg"
        self.state_file = self.workdir / "server-state"
        self._old_pids: list[int] = []  # processes a reload replaced, finishing their last connections
        self.saved_at = 0.0  # time.time() when reload() last saved the server states
        # HAProxy cannot log to a file itself; its startup warnings and alerts on stderr land here.
        self.log_path = self.workdir / "haproxy.log"

    def config_text(self) -> str:
        fe_host, fe_port = self.frontend
        lines = [
            "global",
            f"    stats socket {self.socket_path} mode 600 level admin expose-fd listeners",
            f"    server-state-file {self.state_file}",
            "    hard-stop-after 5s",
        ]
        if self.admin_tcp is not None:
            lines.append(f"    stats socket {_bind(self.admin_tcp)} level admin")
        lines += [
            "    stats timeout 30s",
            "    maxconn 2000",
            "",
            "defaults",
            "    mode http",
            "    option http-keep-alive",
            "    option idle-close-on-response",
            "    load-server-state-from-file global",
            f"    retries {self.retries}",
        ]
        if self.redispatch:
            lines.append("    option redispatch")
        lines += [
            "    timeout connect 2s",
            "    timeout client 30s",
            f"    timeout server {self.timeout_server_ms}ms",
            "    timeout http-request 10s",
            "    timeout http-keep-alive 10s",
            "    timeout queue 10s",
            "    timeout check 2s",
            "",
            "frontend fe_main",
            f"    bind {_bind((fe_host, fe_port))}",
            f"    default_backend {self.backend}",
            "",
            f"backend {self.backend}",
            f"    option httpchk GET {self.check_path}",
            "    http-check expect status 200",
        ]
        for s in self.servers:
            lines.append(
                f"    server {s.name} {_bind((s.address, s.port))} check inter {self.check_inter_ms}ms "
                f"rise {self.rise} fall {self.fall}"
            )
        if self.prometheus is not None:
            lines += [
                "",
                "frontend fe_prometheus",
                f"    bind {_bind(self.prometheus)}",
                "    http-request use-service prometheus-exporter if { path /metrics }",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write the config, check it, start the daemon and wait until its runtime API answers."""
        if self.is_running():
            raise ConfigError(f"HAProxy already runs from {self.pidfile}; stop it before starting again")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)  # a fresh start begins from the configuration
        self._check()
        self._run([])
        deadline = time.monotonic() + START_TIMEOUT
        while not _socket_answers(self.socket_path):
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"HAProxy started from {self.config_path} but its runtime socket {self.socket_path} "
                    f"did not answer within {START_TIMEOUT:.0f} s:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def reload(self, save_states: bool = True) -> int:
        """Reload as a network team does for any configuration change: a new process from the config
        file, handed the listening sockets (`-x`), the old one told to finish (`-sf OLDPID`). With
        ``save_states`` the server states are saved first, so runtime admin states survive; without,
        the state file is removed and the new process starts from the configuration (a `maint` set
        at runtime is forgotten). Returns the new process's pid once its runtime API answers.

        A state set between the save and the new process's start is still lost (HAProxy reads the
        file once, at start): the config is checked before the save to keep that gap short."""
        old = _read_pid(self.pidfile)
        if old is None or not alive(old, "haproxy"):
            raise ConfigError(f"no HAProxy runs from {self.pidfile} to reload; start it first")
        self._check()
        if save_states:
            saved = _ask(self.socket_path, "show servers state")
            partial = self.state_file.with_suffix(".partial")
            partial.write_text(saved)
            partial.replace(self.state_file)  # the new process never reads half a file
            self.saved_at = time.time()
        else:
            self.state_file.unlink(missing_ok=True)
        self._run(["-x", str(self.socket_path), "-sf", str(old)])
        self._old_pids = [pid for pid in (*self._old_pids, old) if alive(pid, "haproxy")]
        deadline = time.monotonic() + START_TIMEOUT
        while (pid := _pid_answering(self.socket_path)) in (None, old):
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"HAProxy reloaded from {self.config_path} but no new process answered on "
                    f"{self.socket_path} within {START_TIMEOUT:.0f} s:\n{self._log_tail()}"
                )
            time.sleep(0.01)
        assert pid is not None
        return pid

    def finishing(self) -> list[int]:
        """Processes a reload replaced that still serve their last connections."""
        return [pid for pid in self._old_pids if alive(pid, "haproxy")]

    def stop(self) -> None:
        stop_pidfile(self.pidfile, STOP_TIMEOUT)
        for pid in self.finishing():  # reloaded-away processes still serving their last connections
            terminate(pid, "haproxy", STOP_TIMEOUT)
        self._old_pids.clear()

    def _check(self) -> None:
        """Write the config and have `haproxy -c` check it."""
        self.config_path.write_text(self.config_text())
        with self.log_path.open("ab") as log:
            check = subprocess.run(
                [HAPROXY, "-c", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=START_TIMEOUT,
                check=False,
            )
        if check.returncode != 0:
            raise ConfigError(
                f"haproxy -c rejected {self.config_path} (exit {check.returncode}):\n{self._log_tail()}"
            )

    def _run(self, extra: list[str]) -> None:
        """Start a daemon from the config (-D: the launcher exits once the daemon has bound its sockets;
        the daemon is not our child)."""
        command = [HAPROXY, "-f", str(self.config_path), "-D", "-p", str(self.pidfile), *extra]
        with self.log_path.open("ab") as log:
            run = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        if run.returncode != 0:
            raise ConfigError(f"{' '.join(command)} failed (exit {run.returncode}):\n{self._log_tail()}")

    def is_running(self) -> bool:
        pid = _read_pid(self.pidfile)
        return pid is not None and alive(pid, "haproxy")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:]) or f"(log {self.log_path} is empty)"


def stop_pidfile(pidfile: Path, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the HAProxy whose pid is in ``pidfile``: SIGTERM, wait up to ``timeout``, then SIGKILL.

    Does nothing when the file is missing or the process is already gone.
    """
    pid = _read_pid(pidfile)
    if pid is not None:
        terminate(pid, "haproxy", timeout)
    pidfile.unlink(missing_ok=True)


def _bind(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().split()
    except OSError:
        return None
    # With -D and no master-worker mode the file holds the one daemon pid; take the first to be safe.
    return int(text[0]) if text and text[0].isdigit() else None


def _socket_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"show info\n")
            data = sock.recv(4096)
    except OSError:
        return False
    return data.startswith(b"Name:")


def _ask(path: Path, command: str, timeout: float = 5.0) -> str:
    """One runtime API command, its whole answer (HAProxy closes the connection when done)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _pid_answering(path: Path) -> int | None:
    """The pid of the process answering on the runtime socket, or None while none does."""
    with contextlib.suppress(OSError):
        for line in _ask(path, "show info", timeout=1.0).splitlines():
            key, _, value = line.partition(":")
            if key == "Pid" and value.strip().isdigit():
                return int(value)
    return None
