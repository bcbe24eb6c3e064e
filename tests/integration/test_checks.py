"""Health checks against a real HTTP server, real ports and a real sshd on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.adapters.checks.base import CheckResult
from orchestrator.adapters.checks.command import RemoteCommandCheck
from orchestrator.adapters.checks.http import HTTPCheck
from orchestrator.adapters.checks.tcp import TCPCheck
from orchestrator.adapters.remote.base import Remote
from orchestrator.adapters.remote.ssh import SSHPool, SSHRemote
from orchestrator.errors import CheckError, HostKeyError, RemoteError
from orchestrator.lab.sshd import LabHost, free_port, running_sshd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ADDRESS = "127.0.0.4"
RELEASE = threading.Event()  # set at teardown so that slow handlers end at once

DOCUMENT = {"version": "2", "build": 7, "app": {"ready": True, "name": "shop"}, "items": [{"id": "a"}]}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/drop":
            self.close_connection = True
            return
        if self.path == "/slow":
            RELEASE.wait(timeout=10)
        code, body = {
            "/health": (200, b"all good, version 2"),
            "/json": (200, json.dumps(DOCUMENT).encode()),
            "/sick": (503, b"warming up"),
            "/slow": (200, b"late"),
        }.get(self.path, (404, b"no such page"))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer((ADDRESS, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RELEASE.clear()
    try:
        yield f"http://{ADDRESS}:{server.server_address[1]}"
    finally:
        RELEASE.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_status(web: str) -> None:
    assert HTTPCheck(f"{web}/health").probe() == CheckResult(True, "HTTP 200")
    sick = HTTPCheck(f"{web}/sick").probe()
    assert sick == CheckResult(False, "HTTP 503, expected 200")
    assert HTTPCheck(f"{web}/sick", status=503).probe().ok


def test_http_body_contains(web: str) -> None:
    assert HTTPCheck(f"{web}/health", contains="version 2").probe().ok
    result = HTTPCheck(f"{web}/health", contains="version 3").probe()
    assert result == CheckResult(False, "HTTP 200, body does not contain 'version 3'")


def test_http_json_fields(web: str) -> None:
    result = HTTPCheck(f"{web}/json", json={"version": "2"}).probe()
    assert result == CheckResult(True, "HTTP 200, version='2'")
    nested = HTTPCheck(f"{web}/json", json={"app.ready": True, "items.0.id": "a", "build": "7"}).probe()
    assert nested.ok, nested.detail
    wrong = HTTPCheck(f"{web}/json", json={"version": "3"}).probe()
    assert wrong == CheckResult(False, "json field version='2', expected '3'")
    missing = HTTPCheck(f"{web}/json", json={"app.color": "red"}).probe()
    assert missing == CheckResult(False, "json field app.color is missing, expected 'red'")
    assert not HTTPCheck(f"{web}/json", json={"app.ready": 1}).probe().ok
    not_json = HTTPCheck(f"{web}/health", json={"version": "2"}).probe()
    assert not not_json.ok and "not JSON" in not_json.detail


def test_http_refused_port_is_unhealthy_not_an_error() -> None:
    port = free_port(ADDRESS)
    result = HTTPCheck(f"http://{ADDRESS}:{port}/health").probe()
    assert result == CheckResult(False, f"connection refused to {ADDRESS}:{port}")


def test_http_timeout_on_slow_endpoint(web: str) -> None:
    result = HTTPCheck(f"{web}/slow", timeout=0.3).probe()
    port = web.rsplit(":", 1)[1]
    assert result == CheckResult(False, f"no answer from {ADDRESS}:{port} within 0.3 s")


def test_http_connection_closed_without_answer(web: str) -> None:
    result = HTTPCheck(f"{web}/drop").probe()
    assert not result.ok and "closed the connection" in result.detail


def test_http_bad_url_is_refused_at_construction() -> None:
    for url in ("ftp://x/", "http:///nohost", "http://h:notaport/"):
        with pytest.raises(CheckError):
            HTTPCheck(url)


def test_tcp_open_and_closed(web: str) -> None:
    port = int(web.rsplit(":", 1)[1])
    assert TCPCheck(ADDRESS, port).probe() == CheckResult(True, f"TCP {ADDRESS}:{port} accepts connections")
    closed = free_port(ADDRESS)
    assert TCPCheck(ADDRESS, closed, name="app port").probe() == CheckResult(
        False,
        f"connection refused to {ADDRESS}:{closed}",
    )


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    with running_sshd(tmp_path_factory.mktemp("checks-ssh"), host="app1", address=ADDRESS) as lab:
        yield lab


def test_command_check_over_ssh(host: LabHost, tmp_path: Path) -> None:
    with SSHPool() as pool:
        flag = tmp_path / "ready"
        check = RemoteCommandCheck(
            lambda: pool.get(host.target), f"test -f {flag} && echo ready", name="ready"
        )
        assert check.name == "ready"
        assert check.probe() == CheckResult(False, "exit 1")
        flag.touch()
        assert check.probe() == CheckResult(True, "exit 0: ready")
        failing = RemoteCommandCheck(
            pool.get(host.target), "echo starting; echo 'db unreachable' >&2; exit 3"
        )
        assert failing.probe() == CheckResult(False, "exit 3: db unreachable")
        pid_file = tmp_path / "pid"
        slow = RemoteCommandCheck(pool.get(host.target), f"echo $$ > {pid_file}; exec sleep 10", timeout=0.3)
        result = slow.probe()
        with contextlib.suppress(OSError, ValueError):  # sshd leaves a timed-out command running
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert result == CheckResult(
            False, f"'echo $$ > {pid_file}; exec sleep 10' did not finish within 0.3 s"
        )


def test_command_check_unreachable_host_is_unhealthy(host: LabHost) -> None:
    down = dataclasses.replace(host.target, port=free_port(ADDRESS))
    result = RemoteCommandCheck(lambda: SSHRemote.connect(down), "true").probe()
    assert not result.ok
    assert result.detail.startswith("ssh failed: cannot connect to app1") and "refused" in result.detail


def test_command_check_does_not_hide_host_key_problems(host: LabHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    def connect() -> Remote:
        return SSHRemote.connect(dataclasses.replace(host.target, known_hosts=empty))

    with pytest.raises(HostKeyError):
        RemoteCommandCheck(connect, "true").probe()
    assert issubclass(HostKeyError, RemoteError)
