"""Bounded HTTP load and capacity sampling, to see (or rule out) downtime during a rollout.

Used by the end-to-end tests, the demo and the benchmark. Stdlib only. Every request and every sample
is kept; both stop by themselves after ``max_requests`` / ``max_seconds`` so a forgotten ``stop()`` cannot
run forever. Times are ``time.monotonic()`` seconds, so requests and capacity samples line up.

Two kinds of client, because a rollout can hurt them differently: keep-alive clients hold one HTTP/1.1
connection like a user session (a reset connection is a visible failure), fresh clients connect per
request (a refused connection is a visible failure).
"""

from __future__ import annotations

import collections
import http.client
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.errors import CheckError, InputError, StateError

DEFAULT_PHASE = "run"
# After a failure a client pauses this long (or think_time if longer), so an unreachable target shows up as
# a steady stream of failures instead of burning the whole request budget in a fraction of a second.
FAILURE_PAUSE = 0.05
_VERSION_RE = re.compile(r"""version["']?\s*[=:]\s*["']?([A-Za-z0-9][A-Za-z0-9._+\-]*)""")


@dataclass(frozen=True)
class Request:
    started: float  # time.monotonic() when sent
    latency: float  # seconds until the whole body arrived, or until the failure
    ok: bool  # False on connection error/reset, timeout or HTTP status >= 500
    status: int | None
    version: str | None  # the app version that answered, if it said
    error: str | None
    phase: str  # the phase current when the request was sent


@dataclass
class LoadReport:
    sent: int
    failed: int
    requests: list[Request] = field(default_factory=list)

    @classmethod
    def of(cls, requests: list[Request]) -> LoadReport:
        ordered = sorted(requests, key=lambda r: r.started)
        return cls(sent=len(ordered), failed=sum(not r.ok for r in ordered), requests=ordered)

    def latency_ms(self, q: float, phase: str | None = None) -> float:
        """Latency quantile ``q`` (0.5, 0.99...) of successful requests, by nearest rank; NaN if none."""
        if not 0.0 <= q <= 1.0:
            raise InputError("LoadReport.latency_ms", f"quantile {q} is outside [0, 1]", "e.g. 0.5 or 0.99")
        values = sorted(r.latency for r in self.requests if r.ok and (phase is None or r.phase == phase))
        if not values:
            return math.nan
        # Nearest rank (always an observed value); the epsilon keeps 0.07 * 100 = 7.000000000000001 at rank 7.
        rank = max(1, math.ceil(q * len(values) - 1e-9))
        return values[rank - 1] * 1000.0

    def failures(self) -> list[Request]:
        return [r for r in self.requests if not r.ok]

    def versions(self) -> collections.Counter[str]:
        """How many successful requests each app version answered."""
        return collections.Counter(r.version for r in self.requests if r.ok and r.version is not None)

    def phases(self) -> list[str]:
        """Phases in the order they first appear."""
        return list(dict.fromkeys(r.phase for r in self.requests))

    def summary(self) -> str:
        parts = [f"sent={self.sent} failed={self.failed}"]
        for phase in self.phases():
            in_phase = [r for r in self.requests if r.phase == phase]
            bad = sum(not r.ok for r in in_phase)
            p50, p99 = self.latency_ms(0.5, phase), self.latency_ms(0.99, phase)
            parts.append(f"{phase}: n={len(in_phase)} failed={bad} p50={_ms(p50)} p99={_ms(p99)}")
        versions = self.versions()
        if versions:
            parts.append("versions " + " ".join(f"{v}={n}" for v, n in sorted(versions.items())))
        return " | ".join(parts)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}ms"


def parse_version(header: str | None, body: bytes) -> str | None:
    """The app version from an ``X-App-Version`` header, a JSON ``{"version": ...}`` or ``version=V``."""
    if header and header.strip():
        return header.strip()
    text = body[:4096].decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("version"), str | int | float):
            return str(data["version"])
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


class LoadGenerator:
    def __init__(
        self,
        url: str,
        *,
        keepalive_clients: int = 4,
        fresh_clients: int = 2,
        max_requests: int = 5000,
        max_seconds: float = 300.0,
        timeout: float = 10.0,
        think_time: float = 0.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InputError(
                "LoadGenerator", f"URL {url!r} is not a plain http:// URL", "e.g. http://127.0.0.1:8080/"
            )
        if keepalive_clients < 0 or fresh_clients < 0 or keepalive_clients + fresh_clients == 0:
            raise InputError(
                "LoadGenerator", "needs at least one client", "keepalive_clients + fresh_clients >= 1"
            )
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._clients = [self._keepalive_client] * keepalive_clients + [self._fresh_client] * fresh_clients
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.think_time = think_time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._requests: list[Request] = []
        self._in_flight: dict[int, tuple[float, str]] = {}  # thread ident -> (started, phase)
        self._issued = 0
        self._phase = DEFAULT_PHASE
        self._deadline = math.inf
        self._threads: list[threading.Thread] = []
        self._final: LoadReport | None = None

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise StateError(f"load generator for {self.url} was already started; make a new one")
        self._deadline = time.monotonic() + self.max_seconds
        for i, client in enumerate(self._clients):
            thread = threading.Thread(target=client, name=f"load-{client.__name__[1:]}-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def set_phase(self, phase: str) -> None:
        """Tag the requests sent from now on (may be called before ``start``)."""
        with self._lock:
            self._phase = phase

    def wait(self, timeout: float) -> bool:
        """Wait until the clients stopped by themselves (budget spent); True if they did."""
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stop(self) -> LoadReport:
        """Stop every client and return the report; waits at most about twice the request timeout."""
        if self._final is not None:
            return self._final
        self._stop.set()
        # A request in flight may need a connect and a read, each up to `timeout`.
        self.wait(2 * self.timeout + 1.0)
        with self._lock:
            requests = list(self._requests)
            now = time.monotonic()
            for started, phase in self._in_flight.values():  # clients stuck past the wait: count as lost
                requests.append(
                    Request(
                        started, now - started, False, None, None, "no answer before the load stopped", phase
                    )
                )
        self._final = LoadReport.of(requests)
        return self._final

    @property
    def report(self) -> LoadReport:
        """The final report after ``stop()``, or the requests so far while running."""
        if self._final is not None:
            return self._final
        with self._lock:
            return LoadReport.of(list(self._requests))

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- clients ------------------------------------------------------------------------------------

    def _take_turn(self) -> str | None:
        """Reserve one request of the budget; the phase to tag it with, or None when the load is over."""
        with self._lock:
            if self._stop.is_set() or self._issued >= self.max_requests or time.monotonic() >= self._deadline:
                return None
            self._issued += 1
            return self._phase

    def _keepalive_client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            while (phase := self._take_turn()) is not None:
                if conn is None:
                    conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
                request = self._one_request(conn, phase, {})
                if request.status is None:  # no complete answer: the connection is unusable
                    conn.close()  # reconnect next time, like a browser would after a reset
                    conn = None
                if not request.ok:
                    self._pause(FAILURE_PAUSE)
                self._pause(self.think_time)
        finally:
            if conn is not None:
                conn.close()

    def _fresh_client(self) -> None:
        while (phase := self._take_turn()) is not None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            try:
                if not self._one_request(conn, phase, {"Connection": "close"}).ok:
                    self._pause(FAILURE_PAUSE)
            finally:
                conn.close()
            self._pause(self.think_time)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _one_request(self, conn: http.client.HTTPConnection, phase: str, headers: dict[str, str]) -> Request:
        """Send one GET, record it and return it."""
        ident = threading.get_ident()
        started = time.monotonic()
        with self._lock:
            self._in_flight[ident] = (started, phase)
        status: int | None = None
        version: str | None = None
        error: str | None = None
        try:
            conn.request("GET", self._path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            status = response.status
            version = parse_version(response.getheader("X-App-Version"), body)
            if status >= 500:
                error = f"HTTP {status} {response.reason}"
        # OSError: refused, reset, timeout; HTTPException: closed without answer, bad status line. Anything
        # else is caught too: a client thread must record the failure, never die silently.
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            status = None  # a status line without a complete body is no answer either
        request = Request(started, time.monotonic() - started, error is None, status, version, error, phase)
        with self._lock:
            del self._in_flight[ident]
            self._requests.append(request)
        return request


@dataclass(frozen=True)
class CapacitySample:
    t: float  # time.monotonic()
    in_service: int  # servers receiving new traffic (ServerState.in_service)
    total: int


class CapacitySampler:
    """Polls ``read()`` (e.g. ``LoadBalancer.servers``) every ``interval`` seconds in a thread."""

    def __init__(
        self, read: Callable[[], list[ServerState]], interval: float = 0.1, max_seconds: float = 600.0
    ) -> None:
        self._read = read
        self.interval = interval
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._samples: list[CapacitySample] = []
        self.skipped: list[tuple[float, str]] = []  # (time.monotonic(), error) of reads that failed
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise StateError("capacity sampler was already started; make a new one")
        self._thread = threading.Thread(target=self._run, name="capacity-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[CapacitySample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 10.0)  # a read in progress (socket timeouts) may take a while
        return self.samples

    @property
    def samples(self) -> list[CapacitySample]:
        with self._lock:
            return list(self._samples)

    def min_in_service(self) -> int:
        with self._lock:
            if not self._samples:
                last = f"; last error: {self.skipped[-1][1]}" if self.skipped else ""
                raise CheckError(f"no capacity sample was taken ({len(self.skipped)} reads failed{last})")
            return min(s.in_service for s in self._samples)

    def __enter__(self) -> CapacitySampler:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while time.monotonic() < deadline:
            t = time.monotonic()
            try:
                servers = self._read()
                sample = CapacitySample(t, sum(s.in_service for s in servers), len(servers))
                with self._lock:
                    self._samples.append(sample)
            except Exception as exc:  # a failed read is a gap in the record, not the end of sampling
                with self._lock:
                    self.skipped.append((t, f"{type(exc).__name__}: {exc}"))
            if self._stop.wait(self.interval):
                return
