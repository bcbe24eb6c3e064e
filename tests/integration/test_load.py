"""LoadGenerator and CapacitySampler against a small threaded HTTP server in a child process on 127.0.0.1.

The server runs in its own process so a test can SIGKILL it mid-run, which is what downtime looks like.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.errors import CheckError
from orchestrator.lab.load import CapacitySampler, LoadGenerator, LoadReport

pytestmark = pytest.mark.integration

# argv: port (0 = any), delay in seconds, file to write the bound port to.
SERVER = r"""
import http.server, json, os, sys, threading, time
port, delay, port_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
connections = 0

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says close

    def setup(self):
        global connections
        with lock:
            connections += 1
        super().setup()

    def do_GET(self):
        if self.path == "/connections":
            self.answer(200, str(connections).encode())
            return
        time.sleep(delay)
        if self.path == "/fail":
            self.answer(503, b"version=1\n")
        elif self.path == "/json":
            self.answer(200, json.dumps({"status": "ok", "version": "7"}).encode(), header=False)
        else:
            self.answer(200, b"version=1\n")

    def answer(self, status, body, header=True):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if header:
            self.send_header("X-App-Version", "1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
"""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Server:
    def __init__(self, tmp: Path, delay: float) -> None:
        self.tmp = tmp
        self.delay = delay
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port_file = self.tmp / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port), str(self.delay), str(port_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "server.log").open("ab"),
            start_new_session=True,
        )
        wait_until(port_file.exists, 10, "the test HTTP server to listen")
        self.port = int(port_file.read_text())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def connections(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/connections")
            return int(conn.getresponse().read())
        finally:
            conn.close()


@contextmanager
def running_server(tmp: Path, delay: float) -> Iterator[Server]:
    server = Server(tmp, delay)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, delay=0.005) as s:
        yield s


def count(load: LoadGenerator, *, ok: bool, phase: str | None = None) -> int:
    return sum(r.ok is ok and (phase is None or r.phase == phase) for r in load.report.requests)


def at_least(load: LoadGenerator, n: int, phase: str) -> bool:
    return count(load, ok=True, phase=phase) >= n


def test_counts_versions_and_budget(server: Server) -> None:
    load = LoadGenerator(server.url(), keepalive_clients=3, fresh_clients=2, max_requests=200, timeout=5)
    load.start()
    assert load.wait(timeout=60), "the generator should stop by itself after max_requests"
    report = load.stop()
    assert (report.sent, report.failed) == (200, 0)
    assert report.versions() == {"1": 200}
    assert all(r.status == 200 and r.error is None and r.phase == "run" for r in report.requests)
    assert report.latency_ms(0.5) >= 5.0  # the server sleeps 5 ms per request: a lower bound, not a timing


def test_keepalive_clients_reuse_their_connection(server: Server) -> None:
    before = server.connections()
    with LoadGenerator(server.url(), keepalive_clients=3, fresh_clients=0, max_requests=60) as load:
        assert load.wait(timeout=60)
    assert load.report.sent == 60
    assert server.connections() - before == 3 + 1  # one per client, plus this query's own


def test_fresh_clients_connect_per_request(server: Server) -> None:
    before = server.connections()
    with LoadGenerator(server.url(), keepalive_clients=0, fresh_clients=2, max_requests=30) as load:
        assert load.wait(timeout=60)
    assert load.report.sent == 30
    assert server.connections() - before == 30 + 1


def test_phases_tag_requests_in_order(server: Server) -> None:
    load = LoadGenerator(
        server.url(), keepalive_clients=2, fresh_clients=1, max_requests=3000, max_seconds=60
    )
    load.set_phase("before")
    with load:
        for phase, nxt in (("before", "during"), ("during", "after"), ("after", None)):
            wait_until(partial(at_least, load, 20, phase), 30, f"20 requests in {phase}")
            if nxt:
                load.set_phase(nxt)
    report = load.report
    assert report.phases() == ["before", "during", "after"]
    assert report.failed == 0
    for phase in report.phases():
        assert report.latency_ms(0.5, phase) >= 5.0
        assert report.latency_ms(0.99, phase) >= report.latency_ms(0.5, phase)
    assert "before: n=" in report.summary() and "after: n=" in report.summary()


def test_killed_server_shows_failures_and_clients_recover(tmp_path: Path) -> None:
    with running_server(tmp_path, delay=0.02) as server:
        load = LoadGenerator(
            server.url(), keepalive_clients=3, fresh_clients=2, max_requests=5000, max_seconds=60
        )
        with load:
            load.set_phase("up")
            wait_until(lambda: count(load, ok=True) >= 20, 30, "20 successful requests")
            load.set_phase("down")
            server.kill()
            wait_until(lambda: count(load, ok=False) >= 10, 30, "10 failed requests after the kill")
            load.set_phase("back")
            server.start()  # same port again
            wait_until(lambda: count(load, ok=True, phase="back") >= 20, 30, "20 successes after the restart")
        report = load.report
    assert report.failed >= 10
    # Sent before the kill, failed only if still in flight when it came: at most one per client.
    assert sum(not r.ok for r in report.requests if r.phase == "up") <= 5
    errors = {r.error.split(":")[0] for r in report.failures() if r.error}
    assert errors <= {
        "ConnectionRefusedError",
        "ConnectionResetError",
        "RemoteDisconnected",
        "BrokenPipeError",
    }
    assert "ConnectionRefusedError" in errors
    assert all(r.status is None for r in report.failures())
    # Every keep-alive client reconnected: all the failures happened before the last successes.
    last_failure = max(r.started for r in report.failures())
    assert sum(r.ok and r.started > last_failure for r in report.requests) >= 5


def test_5xx_is_a_failure_with_status(server: Server) -> None:
    with LoadGenerator(server.url("/fail"), keepalive_clients=1, fresh_clients=1, max_requests=6) as load:
        assert load.wait(timeout=60)
    report = load.report
    assert (report.sent, report.failed) == (6, 6)
    assert {(r.status, r.error) for r in report.failures()} == {(503, "HTTP 503 Service Unavailable")}
    assert report.versions() == {}  # only successful answers count


def test_json_body_version_without_header(server: Server) -> None:
    with LoadGenerator(server.url("/json"), keepalive_clients=1, fresh_clients=1, max_requests=10) as load:
        assert load.wait(timeout=60)
    assert load.report.versions() == {"7": 10}


def test_slow_answers_time_out(tmp_path: Path) -> None:
    with running_server(tmp_path, delay=5.0) as server:
        load = LoadGenerator(server.url(), keepalive_clients=1, fresh_clients=1, max_requests=4, timeout=0.2)
        with load:
            assert load.wait(timeout=30)
    report = load.report
    assert (report.sent, report.failed) == (4, 4)
    assert all("timed out" in (r.error or "") for r in report.failures())


def test_bounded_by_max_seconds(server: Server) -> None:
    load = LoadGenerator(
        server.url(), keepalive_clients=2, fresh_clients=0, max_requests=10**9, max_seconds=0.3
    )
    load.start()
    assert load.wait(timeout=30), "the generator should stop by itself after max_seconds"
    report = load.stop()
    assert 0 < report.sent < 10**9 and report.failed == 0


def test_unreachable_target_fails_steadily_without_burning_the_budget(tmp_path: Path) -> None:
    with running_server(tmp_path, delay=0.0) as server:
        url = server.url()
    load = LoadGenerator(url, keepalive_clients=2, fresh_clients=2, max_requests=100_000, max_seconds=0.3)
    with load:
        assert load.wait(timeout=30)
    report = load.report
    assert report.sent == report.failed > 0
    assert report.sent < 1000  # each client pauses after a failure (refused connects take microseconds)


def test_stop_before_start_and_twice() -> None:
    load = LoadGenerator("http://127.0.0.1:9/")
    first = load.stop()
    assert first.sent == 0 and load.stop() is first


def _state(server: str, admin: AdminState, status: str) -> ServerState:
    return ServerState("app", server, admin, status, 0)


def test_capacity_sampler_records_and_survives_read_errors() -> None:
    calls = 0
    lock = threading.Lock()

    def read() -> list[ServerState]:
        nonlocal calls
        with lock:
            calls += 1
            n = calls
        if n % 3 == 0:
            raise OSError("stats socket refused")
        drained = n % 5 == 0
        return [
            _state("s1", AdminState.DRAIN if drained else AdminState.READY, "DRAIN" if drained else "UP"),
            _state("s2", AdminState.READY, "UP 1/2"),
            _state("s3", AdminState.MAINT, "MAINT"),
        ]

    with CapacitySampler(read, interval=0.001, max_seconds=60) as sampler:
        wait_until(lambda: len(sampler.samples) >= 10 and len(sampler.skipped) >= 3, 30, "samples and errors")
    samples = sampler.stop()
    assert all(s.total == 3 for s in samples)
    assert {s.in_service for s in samples} == {1, 2}
    assert sampler.min_in_service() == 1
    assert all(err.startswith("OSError: stats socket refused") for _, err in sampler.skipped)
    assert [s.t for s in samples] == sorted(s.t for s in samples)


def test_capacity_sampler_stops_by_itself_and_without_samples_says_why() -> None:
    def read() -> list[ServerState]:
        raise OSError("no such socket /run/haproxy.sock")

    def sampling() -> bool:
        return any(t.name == "capacity-sampler" for t in threading.enumerate())

    sampler = CapacitySampler(read, interval=0.001, max_seconds=0.1)
    sampler.start()
    wait_until(lambda: not sampling(), 30, "the sampler to stop after max_seconds")
    assert sampler.stop() == [] and len(sampler.skipped) > 0
    with pytest.raises(CheckError, match=r"no capacity sample.*no such socket /run/haproxy.sock"):
        sampler.min_in_service()


def test_report_of_a_running_generator_is_a_snapshot(server: Server) -> None:
    with LoadGenerator(server.url(), keepalive_clients=1, fresh_clients=0, max_requests=1000) as load:
        wait_until(lambda: load.report.sent >= 5, 30, "5 requests")
        snapshot = load.report
        assert isinstance(snapshot, LoadReport) and snapshot.sent >= 5
    assert load.report.sent >= snapshot.sent
