"""HAProxy through its runtime API (unix socket or TCP), one command per connection.

Every command we send is idempotent (setting a state twice, or reading), so a timeout or a reset after
sending is as safe to retry as a refused connection: those errors are transient.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from orchestrator.adapters.loadbalancers.base import Instance, ServerState
from orchestrator.adapters.loadbalancers.haproxy_parse import (
    Info,
    hard_stop_after,
    merge_servers,
    parse_info,
    parse_servers_state,
    proxies_in_stat,
)
from orchestrator.errors import ConfigError, LoadBalancerError

_MAX_ANSWER = 64 * 1024 * 1024  # a runaway answer must not eat the worker's memory
_SEPARATORS = (";", "\n", "\r", "\x00")


class HAProxy:
    """One backend of one HAProxy, through its runtime API: a unix ``socket`` or a TCP ``address``
    (``host:port``)."""

    def __init__(
        self,
        *,
        backend: str,
        socket: Path | None = None,
        address: str | None = None,
        timeout: float = 5.0,
        config: Path | None = None,
    ) -> None:
        self.backend = backend
        self.timeout = timeout
        self.config = config  # haproxy.cfg, for how long an old process may live (`hard-stop-after`)
        self._hard_stop: tuple[float | None] | None = None  # read once: (seconds or None,)
        self._address: Path | tuple[str, int]
        if socket is not None:
            self._address = socket
            self.endpoint = f"runtime socket {socket}"
        elif address is not None:
            self._address = _host_port(address)
            self.endpoint = f"runtime API at {address}"
        else:  # the inventory's schema forbids this; kept for callers that skip it
            raise ConfigError("HAProxy needs a runtime API 'socket' or 'address'")

    # -- LoadBalancer protocol

    def drain(self, server: str) -> None:
        self._set_state(server, "drain")

    def maint(self, server: str) -> None:
        self._set_state(server, "maint")

    def ready(self, server: str) -> None:
        self._set_state(server, "ready")

    def state(self, server: str) -> ServerState:
        servers = self.servers()
        for s in servers:
            if s.server == server:
                return s
        raise LoadBalancerError(self._no_server(server, [s.server for s in servers]))

    def servers(self) -> list[ServerState]:
        # `show stat <proxy> 4 -1` lists only that backend's servers; a name made of digits would be
        # read as a proxy id, so such a backend gets the full table (filtered by the parser anyway).
        stat_cmd = "show stat" if self.backend.isdigit() else f"show stat {self.backend} 4 -1"
        stat = self.command(stat_cmd)
        state = self.command(f"show servers state {self.backend}")
        if stat.strip() == "No such proxy." or state.strip() == "Can't find backend.":
            raise LoadBalancerError(self._no_backend())
        return merge_servers(stat, state, self.backend)

    def instance(self) -> Instance:
        info = self.info()
        bound = self.hard_stop_after()
        # The process that answers replaced its predecessor when it started, so every older process
        # has stopped by its start + hard-stop-after; Uptime_sec is whole seconds, hence the + 1.
        gone_in = None if bound is None else max(0.0, bound - info.uptime_sec + 1.0)
        return Instance(info.identity, info.pid, float(info.uptime_sec), gone_in)

    # -- beyond the protocol

    def hard_stop_after(self) -> float | None:
        """`hard-stop-after` of the configuration, in seconds; None without one (or unreadable)."""
        if self._hard_stop is None:
            try:
                text = self.config.read_text(errors="replace") if self.config else ""
            except OSError:
                text = ""
            self._hard_stop = (hard_stop_after(text),)
        return self._hard_stop[0]

    def info(self) -> Info:
        """The answering process: its pid, uptime and start time (`show info`)."""
        return parse_info(self.command("show info"))

    # -- runtime API

    def command(self, line: str) -> str:
        """Send one command, return HAProxy's whole answer (it closes the connection when done)."""
        if any(c in line for c in _SEPARATORS):
            # HAProxy runs `;`-separated commands of one line, and a line break starts another: a name
            # holding either would smuggle a second command (the inventory's charset is the first guard).
            raise LoadBalancerError(
                f"refusing to send {line!r} to HAProxy {self.endpoint}: it holds ';' or a line break; "
                "backend and server names may hold letters, digits and _ . : - only"
            )
        deadline = time.monotonic() + self.timeout
        sock = self._connect(line)
        try:
            with sock:
                sock.sendall(line.encode() + b"\n")
                chunks: list[bytes] = []
                size = 0
                while True:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_ANSWER:
                        raise LoadBalancerError(
                            f"HAProxy {self.endpoint} answered `{line}` with more than {_MAX_ANSWER} bytes"
                        )
        except TimeoutError as exc:
            raise LoadBalancerError(
                f"HAProxy {self.endpoint} did not finish answering `{line}` within {self.timeout:g} s; "
                "is HAProxy overloaded or stuck?",
                transient=True,
            ) from exc
        except OSError as exc:
            raise LoadBalancerError(
                f"HAProxy {self.endpoint} dropped the connection during `{line}`: {exc}", transient=True
            ) from exc
        return b"".join(chunks).decode("utf-8", errors="replace")

    def _connect(self, line: str) -> socket.socket:
        hint = self._hint()
        try:
            if isinstance(self._address, Path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(str(self._address))
                except BaseException:
                    sock.close()
                    raise
                return sock
            return socket.create_connection(self._address, timeout=self.timeout)
        except FileNotFoundError as exc:
            raise LoadBalancerError(
                f"HAProxy {self.endpoint} does not exist (sending `{line}`); {hint}", transient=True
            ) from exc
        except ConnectionRefusedError as exc:
            raise LoadBalancerError(
                f"HAProxy {self.endpoint} refused the connection (sending `{line}`); {hint}", transient=True
            ) from exc
        except PermissionError as exc:
            raise LoadBalancerError(
                f"no permission to open HAProxy {self.endpoint}; run the orchestrator as a user allowed by "
                "the socket's `mode`/`user`/`group` in the `stats socket` line"
            ) from exc
        except TimeoutError as exc:
            raise LoadBalancerError(
                f"connecting to HAProxy {self.endpoint} timed out after {self.timeout:g} s "
                f"(sending `{line}`); {hint}",
                transient=True,
            ) from exc
        except OSError as exc:
            # Nothing was sent yet, so retrying is safe whatever went wrong.
            raise LoadBalancerError(
                f"cannot connect to HAProxy {self.endpoint} (sending `{line}`): {exc}; {hint}", transient=True
            ) from exc

    def _set_state(self, server: str, state: str) -> None:
        line = f"set server {self.backend}/{server} state {state}"
        answer = self.command(line).strip()
        if not answer:
            return
        if answer == "No such server.":
            raise LoadBalancerError(self._no_server(server, self._known_servers()))
        if answer == "No such backend.":
            raise LoadBalancerError(self._no_backend())
        if answer.startswith("Permission denied"):
            raise LoadBalancerError(
                f"HAProxy {self.endpoint} refused `{line}`: {answer}; "
                "the `stats socket` line in HAProxy's config needs `level admin`"
            )
        raise LoadBalancerError(f"HAProxy {self.endpoint} refused `{line}`: {answer}")

    # -- error messages

    def _hint(self) -> str:
        where = self._address if isinstance(self._address, Path) else _tcp_text(self._address)
        return f"is HAProxy running with `stats socket {where} level admin` in its global section?"

    def _no_server(self, server: str, known: list[str] | None) -> str:
        listed = ", ".join(known) if known else "(could not list them)"
        return (
            f"HAProxy backend '{self.backend}' ({self.endpoint}) has no server '{server}'; its servers are: "
            f"{listed}. Check the host's lb_server in the inventory."
        )

    def _no_backend(self) -> str:
        try:
            known = ", ".join(proxies_in_stat(self.command("show stat -1 2 -1"))) or "(none)"
        except LoadBalancerError:
            known = "(could not list them)"
        return (
            f"HAProxy {self.endpoint} has no backend '{self.backend}'; its backends are: {known}. "
            "Check the pool's loadbalancer.backend in the inventory."
        )

    def _known_servers(self) -> list[str] | None:
        try:
            answer = self.command(f"show servers state {self.backend}")
            return [r.server for r in parse_servers_state(answer) if r.backend == self.backend]
        except LoadBalancerError:
            return None


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"HAProxy runtime API address {address!r} is not host:port (e.g. 127.0.0.1:9999 or [::1]:9999)"
        )
    return host, int(port)


def _tcp_text(tcp: tuple[str, int]) -> str:
    host, port = tcp
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
