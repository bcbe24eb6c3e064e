"""Pure parsers for HAProxy runtime API answers (`show stat`, `show servers state`, `show info`). No I/O.

Status strings seen from HAProxy 2.6 in `show stat` (tests/unit/data/haproxy_stat_*.txt):
"UP", "UP 1/2" (right after `set server ... state ready`, or after one failed check), "DOWN",
"DOWN 1/2" (one passed check on the way up), "DRAIN", "MAINT", "no check" (checks disabled).
HAProxy also has "MAINT (via BE/SRV)", "MAINT (resolution)", "DOWN (agent)" and "NOLB".

`show stat` alone cannot tell the admin state: a drained server that fails its checks shows "DOWN",
not "DRAIN". `show servers state` carries the admin flags as a bit field, so that is the source of
truth for AdminState; `show stat` gives the status string and the session count.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.errors import LoadBalancerError

# srv_admin_state bits (HAProxy include/haproxy/server-t.h, enum srv_admin):
#   0x01 FMAINT  forced into maintenance (`set server ... state maint`, or `disabled` in the config)
#   0x02 IMAINT  maintenance inherited from a tracked server
#   0x04 CMAINT  `disabled` in the config; a marker only, FMAINT is set along with it
#   0x08 FDRAIN  forced into drain (`set server ... state drain`)
#   0x10 IDRAIN  drain inherited from a tracked server
#   0x20 RMAINT  maintenance because the server's address did not resolve
#   0x40 FQDN_CHANGED  fqdn set over the runtime API; no effect on traffic
# HAProxy itself reads them as: any MAINT bit -> MAINT, else any DRAIN bit -> DRAIN, else READY.
ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x20
ADMIN_DRAIN_BITS = 0x08 | 0x10

# Rows of `show stat` that describe a proxy as a whole, not one server.
_AGGREGATE_ROWS = frozenset({"FRONTEND", "BACKEND"})


class OpState(IntEnum):
    """srv_op_state in `show servers state`."""

    STOPPED = 0  # down (failed checks) or in maintenance
    STARTING = 1  # up, in slowstart
    RUNNING = 2  # up
    STOPPING = 3  # up but soft-stopping (e.g. agent said "drain", or check got a 404 with disable-on-404)


@dataclass(frozen=True)
class StatRow:
    """One row of `show stat`: a frontend, a backend or a server."""

    proxy: str  # pxname
    name: str  # svname: a server name, or FRONTEND / BACKEND
    status: str
    sessions: int  # scur
    fields: Mapping[str, str] = field(repr=False)  # every column by its header name


@dataclass(frozen=True)
class ServerStateRow:
    """One server line of `show servers state`."""

    backend: str
    server: str
    address: str
    op_state: OpState
    admin_bits: int
    user_weight: int
    check_health: int
    fields: Mapping[str, str] = field(repr=False)

    @property
    def admin(self) -> AdminState:
        return admin_from_bits(self.admin_bits)


def admin_from_bits(bits: int) -> AdminState:
    if bits & ADMIN_MAINT_BITS:
        return AdminState.MAINT
    if bits & ADMIN_DRAIN_BITS:
        return AdminState.DRAIN
    return AdminState.READY


def admin_from_status(status: str) -> AdminState:
    """Best guess from a `show stat` status alone; blind to drain on a server that is DOWN."""
    if status.startswith("MAINT"):
        return AdminState.MAINT
    if status.startswith("DRAIN"):
        return AdminState.DRAIN
    return AdminState.READY


def parse_stat(text: str) -> list[StatRow]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname,"):
        raise LoadBalancerError(f"HAProxy answered `show stat` with something that is not CSV: {_head(text)}")
    header = next(csv.reader([lines[0][2:]]))
    rows: list[StatRow] = []
    for values in csv.reader(lines[1:]):
        record = dict(zip(header, values, strict=False))
        try:
            rows.append(
                StatRow(
                    proxy=record["pxname"],
                    name=record["svname"],
                    status=record.get("status", ""),
                    sessions=int(record.get("scur") or 0),
                    fields=record,
                )
            )
        except (KeyError, ValueError) as exc:
            raise LoadBalancerError(f"cannot read `show stat` row {values[:5]}...: {exc!r}") from exc
    return rows


def servers_from_stat(text: str, backend: str) -> list[ServerState]:
    """The servers of ``backend`` from `show stat` alone (admin state guessed from the status)."""
    return [
        ServerState(backend, r.name, admin_from_status(r.status), r.status, r.sessions)
        for r in parse_stat(text)
        if r.proxy == backend and r.name not in _AGGREGATE_ROWS
    ]


def parse_servers_state(text: str) -> list[ServerStateRow]:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# "):
        raise LoadBalancerError(
            f"HAProxy answered `show servers state` in an unknown format (expected version 1): {_head(text)}"
        )
    header = lines[1][2:].split()
    rows: list[ServerStateRow] = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        values = line.split()
        if len(values) < len(header):
            raise LoadBalancerError(
                f"`show servers state` row has {len(values)} of {len(header)} fields: {line}"
            )
        record = dict(zip(header, values, strict=False))
        try:
            rows.append(
                ServerStateRow(
                    backend=record["be_name"],
                    server=record["srv_name"],
                    address=record["srv_addr"],
                    op_state=OpState(int(record["srv_op_state"])),
                    admin_bits=int(record["srv_admin_state"]),
                    user_weight=int(record["srv_uweight"]),
                    check_health=int(record["srv_check_health"]),
                    fields=record,
                )
            )
        except (KeyError, ValueError) as exc:
            raise LoadBalancerError(f"cannot read `show servers state` row {line!r}: {exc!r}") from exc
    return rows


def merge_servers(stat_text: str, state_text: str, backend: str) -> list[ServerState]:
    """Servers of ``backend``: status and sessions from `show stat`, admin from `show servers state`.

    A server missing from the state answer (added between the two commands) keeps the admin state
    guessed from its status.
    """
    admin = {r.server: r.admin for r in parse_servers_state(state_text) if r.backend == backend}
    rows = {r.name: r for r in parse_stat(stat_text) if r.proxy == backend}
    return [
        ServerState(
            s.backend,
            s.server,
            admin.get(s.server, s.admin),
            s.status,
            s.sessions,
            error_counters(rows[s.server]) if s.server in rows else (),
        )
        for s in servers_from_stat(stat_text, backend)
    ]


ERROR_FIELDS = ("hrsp_5xx", "econ", "eresp", "wretr", "wredis")


def error_counters(row: StatRow) -> tuple[int, ...]:
    """A server's error counters in ERROR_FIELDS order; an empty field (HAProxy leaves some blank
    for a TCP backend) counts 0."""
    return tuple(int(v) if (v := row.fields.get(name, "")).isdigit() else 0 for name in ERROR_FIELDS)


@dataclass(frozen=True)
class Info:
    """What `show info` says about the process that answered (tests/unit/data/haproxy_show_info*.txt)."""

    pid: int
    uptime_sec: int
    start_time_sec: int | None  # printed by 2.6 (2.5 and older do not)
    version: str
    node: str

    @property
    def identity(self) -> str:
        """Changes on every reload and restart. A pid alone could be reused by a later process; with
        the start time it cannot. Without a start time (older HAProxy) the pid is all there is."""
        start = "?" if self.start_time_sec is None else str(self.start_time_sec)
        return f"{self.node}/{self.pid}@{start}"


def parse_info(text: str) -> Info:
    """`show info`: one `Key: value` line per field."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    if fields.get("Name") != "HAProxy" or not fields.get("Pid", "").isdigit():
        raise LoadBalancerError(f"HAProxy answered `show info` without its Name and Pid: {_head(text)}")
    start = fields.get("Start_time_sec", "")
    uptime = fields.get("Uptime_sec", "")
    return Info(
        pid=int(fields["Pid"]),
        uptime_sec=int(uptime) if uptime.isdigit() else 0,
        start_time_sec=int(start) if start.isdigit() else None,
        version=fields.get("Version", ""),
        node=fields.get("node", ""),
    )


@dataclass(frozen=True)
class StateKeeping:
    """Whether an haproxy.cfg has a reload keep the runtime admin states of ``backend``'s servers."""

    kept: bool
    why: str  # what the configuration says, or lacks, in its own words


_SECTIONS = frozenset(
    {"global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "mailers"}
    | {"program", "http-errors", "ring", "cache"}
)


@dataclass
class _Section:
    kind: str
    name: str
    parent: str  # `from NAME` on its header line
    settings: dict[str, str] = field(default_factory=dict)  # first value of each keyword


def _sections(config: str) -> list[_Section]:
    found: list[_Section] = []
    for raw in config.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in _SECTIONS:
            name = words[1] if len(words) > 1 and words[1] != "from" else ""
            parent = words[words.index("from") + 1] if "from" in words[:-1] else ""
            found.append(_Section(words[0], name, parent))
        elif found:
            found[-1].settings.setdefault(words[0], words[1] if len(words) > 1 else "")
    return found


def server_state_keeping(config: str, backend: str) -> StateKeeping:
    """Read an haproxy.cfg for `server-state-file` (global) and `load-server-state-from-file` (the
    backend's own, else that of its defaults section: the one it names with `from`, or the last one
    before it). A backend that loads `local` reads `server-state-file-name` (or its own name) under
    `server-state-base`."""
    sections = _sections(config)
    glob = next((s.settings for s in sections if s.kind == "global"), {})
    state_file, base = glob.get("server-state-file", ""), glob.get("server-state-base", "")
    mode, own, last_defaults = "", None, _Section("defaults", "", "")
    named: dict[str, _Section] = {}
    for section in sections:
        if section.kind == "defaults":
            last_defaults = named.setdefault(section.name, section) if section.name else section
        elif section.kind in ("backend", "listen") and section.name == backend:
            own = section
            defaults = named.get(section.parent, last_defaults) if section.parent else last_defaults
            mode = section.settings.get(
                "load-server-state-from-file", defaults.settings.get("load-server-state-from-file", "")
            )
            break
    if own is None:
        return StateKeeping(False, f"the configuration has no backend {backend!r}")
    if mode == "global":
        if state_file:
            return StateKeeping(True, f"load-server-state-from-file global, server-state-file {state_file}")
        return StateKeeping(False, "load-server-state-from-file global but no server-state-file in global")
    if mode == "local":
        where = "/".join(x for x in (base, own.settings.get("server-state-file-name") or backend) if x)
        return StateKeeping(True, f"load-server-state-from-file local, from {where}")
    if mode:
        return StateKeeping(False, f"load-server-state-from-file {mode}")
    missing = "no load-server-state-from-file in defaults or the backend"
    return StateKeeping(False, missing if state_file else f"no server-state-file in global, {missing}")


_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def hard_stop_after(config: str) -> float | None:
    """`hard-stop-after` in the global section, in seconds: how long an old process may go on after a
    reload (HAProxy's time format: a number, milliseconds unless a unit us/ms/s/m/h/d follows); None
    when it is not set (old processes then live as long as their clients keep their connections) or
    cannot be read."""
    glob = next((s.settings for s in _sections(config) if s.kind == "global"), {})
    match = re.fullmatch(r"(\d{1,12})(us|ms|s|m|h|d)?", glob.get("hard-stop-after", ""))
    if match is None:
        return None
    return int(match.group(1)) * _TIME_UNITS[match.group(2) or "ms"]


def proxies_in_stat(text: str) -> list[str]:
    """Backend names in `show stat`, in order, for error messages."""
    seen: dict[str, None] = {}
    for row in parse_stat(text):
        if row.name == "BACKEND":
            seen[row.proxy] = None
    return list(seen)


def _head(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
