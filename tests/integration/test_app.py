"""The lab application on a loopback host: the real binary, the real sh scripts."""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab.app import appctl, build_app, install_app_dir, make_artifact

pytestmark = pytest.mark.integration


def free_address() -> tuple[str, int]:
    address = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
    with socket.socket() as s:
        s.bind((address, 0))
        return address, int(s.getsockname()[1])


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_app(tmp_path_factory.mktemp("build"))


def started(tmp_path: Path, binary: Path, *, delay_ms: int = 150) -> Iterator[tuple[Path, str, int]]:
    address, port = free_address()
    app_dir = tmp_path / "app"
    install_app_dir(app_dir, "1", port=port, address=address, delay_ms=delay_ms, binary=binary)
    done = appctl(app_dir, "start")
    assert done.returncode == 0, done.stderr
    try:
        yield app_dir, address, port
    finally:
        appctl(app_dir, "restart", "--hard")
        appctl(app_dir, "stop")


@pytest.fixture
def app(tmp_path: Path, binary: Path) -> Iterator[tuple[Path, str, int]]:
    yield from started(tmp_path, binary)


@pytest.fixture
def slow_app(tmp_path: Path, binary: Path) -> Iterator[tuple[Path, str, int]]:
    yield from started(tmp_path, binary, delay_ms=1500)


def get(address: str, port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_serves_version_and_health(app: tuple[Path, str, int]) -> None:
    _, address, port = app
    status, headers, body = get(address, port, "/")
    assert (status, body, headers["X-App-Version"]) == (200, b"version=1\n", "1")
    status, _, body = get(address, port, "/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "version": "1"}
    assert get(address, port, "/nope")[0] == 404


def test_keep_alive_serves_several_requests_on_one_connection(app: tuple[Path, str, int]) -> None:
    _, address, port = app
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.connect()
        first = conn.sock
        for _ in range(3):
            conn.request("GET", "/health")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") == "keep-alive"
            resp.read()
            assert conn.sock is first  # http.client would have reconnected had the server closed
    finally:
        conn.close()
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        answer = read_all(sock)  # ends only because the server closed its side as asked
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in answer


def test_install_new_version_then_broken_one(app: tuple[Path, str, int], tmp_path: Path) -> None:
    app_dir, address, port = app
    done = appctl(app_dir, "status")
    assert done.returncode == 0 and "version 1" in done.stdout

    def install(artifact: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(app_dir / "bin" / "install"), str(artifact)], capture_output=True, text=True, timeout=60
        )

    assert install(make_artifact("2", tmp_path / "art")).returncode == 0
    assert json.loads(get(address, port, "/health")[2]) == {"status": "ok", "version": "2"}
    assert (app_dir / "current").resolve() == (app_dir / "releases" / "2").resolve()

    assert install(make_artifact("3", tmp_path / "art", broken=True)).returncode == 0
    status, _, body = get(address, port, "/health")
    assert status == 503
    assert json.loads(body)["version"] == "3"

    bad = tmp_path / "bad.tar.gz"
    bad.write_text("not a tarball")
    done = install(bad)
    assert done.returncode != 0
    assert "not a readable tar.gz" in done.stderr
    assert get(address, port, "/health")[0] == 503  # still the (broken) v3: nothing changed


def send_slow_request(address: str, port: int) -> socket.socket:
    """Send ``GET /`` and return once the server is working on it."""
    sock = socket.create_connection((address, port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
    # The server accepts in order: once a later connection is answered, ours was accepted, and its
    # request bytes were already there to read.
    with socket.create_connection((address, port), timeout=10) as probe:
        probe.sendall(b"GET /health HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        assert probe.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_graceful_stop_finishes_the_request_in_flight(slow_app: tuple[Path, str, int]) -> None:
    app_dir, address, port = slow_app
    idle = socket.create_connection((address, port), timeout=10)  # an idle keep-alive connection
    busy = send_slow_request(address, port)
    done = appctl(app_dir, "stop")  # returns once the server has exited
    assert done.returncode == 0, done.stderr
    answer = read_all(busy)
    busy.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nversion=1\n")
    idle.settimeout(5)
    assert idle.recv(1) == b""  # the idle connection was closed, not left hanging
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=5).close()


def test_hard_restart_loses_the_request_in_flight(slow_app: tuple[Path, str, int]) -> None:
    """The negative control: an in-place update without draining must show a failed request."""
    app_dir, address, port = slow_app
    busy = send_slow_request(address, port)
    done = appctl(app_dir, "restart", "--hard")
    assert done.returncode == 0, done.stderr
    try:
        answer = read_all(busy)
    except ConnectionResetError:
        answer = b""
    finally:
        busy.close()
    assert answer == b""  # no response at all: the client sees an error
    assert get(address, port, "/health")[0] == 200  # and it came back
