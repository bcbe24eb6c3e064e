"""The HAProxy adapter against a real HAProxy 2.6 (HAProxyProcess) and tiny HTTP backends on loopback."""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.errors import ConfigError, LoadBalancerError
from orchestrator.lab.haproxy import HAProxyProcess, Server, stop_pidfile

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# GET /health: 200, or 503 while FLAGDIR/sick exists, after sleeping 1 s while FLAGDIR/slow exists.
# GET /slow?ms=N: answers the backend's name after N ms. GET /fail: 500. Anything else: the name at once.
BACKEND = r"""
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
name, port, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        url = urlparse(self.path)
        code = 200
        if url.path == "/health":
            if os.path.exists(os.path.join(flags, "slow")):
                time.sleep(1.0)
            if os.path.exists(os.path.join(flags, "sick")):
                code = 503
        elif url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["0"])[0]) / 1000)
        elif url.path == "/fail":
            code = 500
        body = name.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

NAMES = ("s1", "s2", "s3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def status_of(port: int, path: str) -> int:
    try:
        return get(port, path)[0]
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Lab:
    proc: HAProxyProcess
    lb: HAProxy
    flags: dict[str, Path]  # server name -> folder for its "sick" / "slow" flag files

    @property
    def port(self) -> int:
        return self.proc.frontend[1]

    def status(self, server: str) -> str:
        return self.lb.state(server).status


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    procs: list[subprocess.Popen[bytes]] = []
    found: dict[str, tuple[int, Path]] = {}
    try:
        for name in NAMES:
            port, flags = free_port(), tmp_path / f"flags-{name}"
            flags.mkdir()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", BACKEND, name, str(port), str(flags)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            found[name] = (port, flags)
        for name, (port, _) in found.items():
            wait_for(f"backend {name} on port {port}", functools.partial(port_open, port))
        yield found
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def make_lab(
    tmp_path: Path,
    backends: dict[str, tuple[int, Path]],
    *,
    admin_tcp: tuple[str, int] | None = None,
    prometheus: tuple[str, int] | None = None,
    retries: int = 3,
    redispatch: bool = True,
) -> HAProxyProcess:
    return HAProxyProcess(
        tmp_path / "haproxy",
        frontend=("127.0.0.1", free_port()),
        backend="app",
        servers=[Server(name, "127.0.0.1", port) for name, (port, _) in backends.items()],
        admin_tcp=admin_tcp,
        prometheus=prometheus,
        retries=retries,
        redispatch=redispatch,
    )


@pytest.fixture
def lab(tmp_path: Path, backends: dict[str, tuple[int, Path]]) -> Iterator[Lab]:
    proc = make_lab(tmp_path, backends)
    try:
        proc.start()
        lb = HAProxy(socket=proc.socket_path, backend="app", timeout=5)
        yield Lab(proc, lb, {name: flags for name, (_, flags) in backends.items()})
    finally:
        proc.stop()


def test_reads_every_server(lab: Lab) -> None:
    wait_for("all servers UP", lambda: all(s.up_after_check for s in lab.lb.servers()))
    # no request has failed yet: every error counter is read, and zero
    quiet = (0, 0, 0, 0, 0)
    assert lab.lb.servers() == [ServerState("app", n, AdminState.READY, "UP", 0, quiet) for n in NAMES]
    assert lab.lb.state("s2") == ServerState("app", "s2", AdminState.READY, "UP", 0, quiet)


def test_error_counters_count_the_5xx_answers_the_clients_got(lab: Lab) -> None:
    """What the availability samples read: HAProxy's own count of 5xx answers per server."""
    wait_for("all servers UP", lambda: all(s.up_after_check for s in lab.lb.servers()))
    before = sum(s.errors[0] for s in lab.lb.servers())
    codes = [status_of(lab.port, "/fail") for _ in range(6)]
    assert codes == [500] * 6
    wait_for("six 5xx counted", lambda: sum(s.errors[0] for s in lab.lb.servers()) - before == 6)
    assert all(s.errors[1:] == (0, 0, 0, 0) for s in lab.lb.servers())


def test_drain_keeps_the_request_in_flight_and_sends_new_ones_elsewhere(lab: Lab) -> None:
    result: dict[str, object] = {}

    def slow() -> None:
        result["answer"] = get(lab.port, "/slow?ms=1500")

    client = threading.Thread(target=slow)
    client.start()
    try:
        wait_for("one session on a server", lambda: any(s.sessions == 1 for s in lab.lb.servers()))
        busy = next(s.server for s in lab.lb.servers() if s.sessions == 1)
        lab.lb.drain(busy)
        assert lab.lb.state(busy) == ServerState("app", busy, AdminState.DRAIN, "DRAIN", 1, (0, 0, 0, 0, 0))
        answers = {get(lab.port, "/")[1] for _ in range(9)}
        assert busy not in answers
    finally:
        client.join(timeout=10)
    assert result["answer"] == (200, busy)
    wait_for(f"no sessions on {busy}", lambda: lab.lb.state(busy).sessions == 0)
    assert lab.lb.state(busy).admin is AdminState.DRAIN


def test_maint_then_ready_is_optimistic_until_a_check_passes(lab: Lab) -> None:
    lab.lb.maint("s1")
    s1 = lab.lb.state("s1")
    assert (s1.admin, s1.status, s1.in_service) == (AdminState.MAINT, "MAINT", False)
    assert {get(lab.port, "/")[1] for _ in range(6)} == {"s2", "s3"}

    # Checks restart on leaving maintenance; a 1 s health answer keeps the first result away long
    # enough to read HAProxy's optimistic state.
    (lab.flags["s1"] / "slow").touch()
    lab.lb.ready("s1")
    s1 = lab.lb.state("s1")
    assert (s1.admin, s1.status) == (AdminState.READY, "UP 1/2")
    assert s1.in_service and not s1.up_after_check
    (lab.flags["s1"] / "slow").unlink()
    wait_for("s1 UP after checks", lambda: lab.lb.state("s1").up_after_check)


def test_drained_server_that_fails_checks_stays_drained(lab: Lab) -> None:
    lab.lb.drain("s1")
    (lab.flags["s1"] / "sick").touch()
    wait_for("s1 DOWN", lambda: lab.status("s1") == "DOWN")
    assert lab.lb.state("s1").admin is AdminState.DRAIN  # `show stat` alone would say nothing of it
    (lab.flags["s3"] / "sick").touch()
    wait_for("s3 DOWN", lambda: lab.status("s3") == "DOWN")
    assert lab.lb.state("s3").admin is AdminState.READY


def test_show_info_names_the_process_and_a_reload_starts_another(lab: Lab) -> None:
    first = lab.lb.instance()
    assert first == lab.lb.instance() and first.pid == lab.lb.info().pid
    assert lab.lb.info().start_time_sec is not None  # 2.6 prints it
    new_pid = lab.proc.reload()
    after = lab.lb.instance()
    assert after.pid == new_pid != first.pid and after.identity != first.identity


def test_a_reload_keeps_maint_and_drain_when_the_states_were_saved(lab: Lab) -> None:
    lab.lb.maint("s1")
    lab.lb.drain("s2")
    lab.proc.reload(save_states=True)
    assert [lab.lb.state(n).admin for n in NAMES] == [AdminState.MAINT, AdminState.DRAIN, AdminState.READY]
    assert {get(lab.port, "/")[1] for _ in range(6)} == {"s3"}


def test_a_reload_without_saved_states_puts_a_maint_server_back_in_service(lab: Lab) -> None:
    # What the orchestrator must watch for: HAProxy itself forgets every runtime admin state.
    wait_for("all servers UP", lambda: all(s.up_after_check for s in lab.lb.servers()))
    lab.lb.maint("s1")
    lab.proc.reload(save_states=False)
    s1 = lab.lb.state("s1")
    assert s1.admin is AdminState.READY and s1.in_service
    wait_for("s1 answering through HAProxy", lambda: "s1" in {get(lab.port, "/")[1] for _ in range(6)})


def test_setting_a_state_twice_is_harmless(lab: Lab) -> None:
    for _ in range(2):
        lab.lb.drain("s2")
    assert lab.lb.state("s2").admin is AdminState.DRAIN
    for _ in range(2):
        lab.lb.ready("s2")
    assert lab.lb.state("s2").admin is AdminState.READY


@pytest.mark.parametrize("action", ["drain", "maint", "ready", "state"])
def test_unknown_server_names_backend_and_lists_servers(lab: Lab, action: str) -> None:
    with pytest.raises(LoadBalancerError) as err:
        getattr(lab.lb, action)("web9")
    text = str(err.value)
    assert "'web9'" in text and "'app'" in text and "s1, s2, s3" in text
    assert str(lab.proc.socket_path) in text
    assert not err.value.transient


@pytest.mark.parametrize("action", ["drain", "servers"])
def test_unknown_backend_lists_backends(lab: Lab, action: str) -> None:
    lb = HAProxy(socket=lab.proc.socket_path, backend="nope")
    with pytest.raises(LoadBalancerError) as err:
        if action == "drain":
            lb.drain("s1")
        else:
            lb.servers()
    assert "no backend 'nope'" in str(err.value) and "backends are: app" in str(err.value)
    assert not err.value.transient


def test_missing_socket_is_transient_and_says_what_to_check(tmp_path: Path) -> None:
    path = tmp_path / "none.sock"
    lb = HAProxy(socket=path, backend="app")
    for call in (lb.servers, lambda: lb.drain("s1")):
        with pytest.raises(LoadBalancerError) as err:
            call()
        assert err.value.transient
        assert f"stats socket {path} level admin" in str(err.value)


def test_stopped_haproxy_is_transient(lab: Lab) -> None:
    lab.proc.stop()
    assert not lab.proc.is_running()
    with pytest.raises(LoadBalancerError) as err:
        lab.lb.servers()
    assert err.value.transient and str(lab.proc.socket_path) in str(err.value)


def test_silent_socket_times_out_transient(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)  # never accepts: the connect succeeds, the answer never comes
        lb = HAProxy(socket=path, backend="app", timeout=0.3)
        with pytest.raises(LoadBalancerError) as err:
            lb.servers()
    assert err.value.transient and "within 0.3 s" in str(err.value)


def test_tcp_runtime_address(tmp_path: Path, backends: dict[str, tuple[int, Path]]) -> None:
    admin_port = free_port()
    proc = make_lab(tmp_path, backends, admin_tcp=("127.0.0.1", admin_port))
    try:
        proc.start()
        lb = HAProxy(address=f"127.0.0.1:{admin_port}", backend="app")
        assert [s.server for s in lb.servers()] == list(NAMES)
        lb.maint("s3")
        assert lb.state("s3").admin is AdminState.MAINT
    finally:
        proc.stop()
    # The old process may still hold its listener for a moment after stop(): wait until it refuses.
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", admin_port), timeout=1).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "HAProxy's TCP runtime API still accepts after stop()"
        time.sleep(0.05)
    with pytest.raises(LoadBalancerError) as err:
        lb.servers()
    assert err.value.transient and f"stats socket 127.0.0.1:{admin_port} level admin" in str(err.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", ":9999", "host:0", "[::1]"])
def test_bad_tcp_address_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError, match="not host:port"):
        # The schema refuses these first; the adapter holds its own line for configs built without it.
        HAProxy(address=address, backend="app")


def test_process_lifecycle_and_prometheus(tmp_path: Path, backends: dict[str, tuple[int, Path]]) -> None:
    metrics_port = free_port()
    proc = make_lab(tmp_path, backends, prometheus=("127.0.0.1", metrics_port), retries=0, redispatch=False)
    text = proc.config_text()
    assert "retries 0" in text and "option redispatch" not in text
    assert f"stats socket {proc.socket_path} mode 600 level admin" in text
    try:
        proc.start()
        assert proc.is_running()
        with pytest.raises(ConfigError, match="already runs"):
            proc.start()
        status, body = get(metrics_port, "/metrics")
        assert status == 200 and "haproxy_server_status" in body
        assert get(proc.frontend[1], "/")[1] in NAMES
    finally:
        proc.stop()
    assert not proc.is_running() and not proc.pidfile.exists()
    proc.stop()  # idempotent
    stop_pidfile(tmp_path / "never.pid")


def test_start_reports_a_rejected_config(tmp_path: Path) -> None:
    proc = HAProxyProcess(
        tmp_path, frontend=("127.0.0.1", free_port()), backend="app", servers=[Server("bad", "127.0.0.1", 1)]
    )
    proc.check_path = "/health\n    bogus-keyword"  # an invalid line that `haproxy -c` must refuse
    with pytest.raises(ConfigError, match="bogus-keyword"):
        proc.start()
    assert not proc.is_running()
