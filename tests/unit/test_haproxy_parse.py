"""Parsers run on output captured from a real HAProxy 2.6.12 (tests/unit/data/haproxy_*.txt).

The captures come from HAProxyProcess (orchestrator/lab/haproxy.py) with three servers s1-s3 in
backend "app", checks every 1 s, rise 2, fall 2; each pair of files was taken back to back:
  up               all servers UP
  drain            s1 drained with 2 slow requests still in flight (2 on s2 and s3 too)
  maint            s1 still drained, s2 in maintenance
  ready            s2 right after `state ready`: optimistic "UP 1/2" before any check passed
  down             s1 drained and failing checks (shows "DOWN"), s3 failing checks
  transitions      s1 as above; s2 one failed check ("UP 1/2"); s3 one passed check ("DOWN 1/2")
  nocheck_weight0  s3 after `disable health`; s2 after `set weight app/s2 0` (still "UP")
`show info` (haproxy_show_info*.txt): one process 1 s after its start, and the process that replaced
it 1.2 s later (`haproxy -f CFG -D -p PID -x SOCK -sf OLDPID`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.adapters.loadbalancers.haproxy_parse import (
    OpState,
    admin_from_bits,
    admin_from_status,
    error_counters,
    merge_servers,
    parse_info,
    parse_servers_state,
    parse_stat,
    proxies_in_stat,
    server_state_keeping,
    servers_from_stat,
)
from orchestrator.errors import LoadBalancerError

DATA = Path(__file__).parent / "data"
R, D, M = AdminState.READY, AdminState.DRAIN, AdminState.MAINT


def stat(tag: str) -> str:
    return (DATA / f"haproxy_stat_{tag}.txt").read_text()


def state(tag: str) -> str:
    return (DATA / f"haproxy_servers_state_{tag}.txt").read_text()


# (capture, [(server, admin, status, sessions)]) with admin taken from `show servers state`
MERGED = [
    ("up", [("s1", R, "UP", 0), ("s2", R, "UP", 0), ("s3", R, "UP", 0)]),
    ("drain", [("s1", D, "DRAIN", 2), ("s2", R, "UP", 2), ("s3", R, "UP", 2)]),
    ("maint", [("s1", D, "DRAIN", 0), ("s2", M, "MAINT", 0), ("s3", R, "UP", 0)]),
    ("ready", [("s1", D, "DRAIN", 0), ("s2", R, "UP 1/2", 0), ("s3", R, "UP", 0)]),
    ("down", [("s1", D, "DOWN", 0), ("s2", R, "UP", 0), ("s3", R, "DOWN", 0)]),
    ("transitions", [("s1", D, "DOWN", 0), ("s2", R, "UP 1/2", 0), ("s3", R, "DOWN 1/2", 0)]),
    ("nocheck_weight0", [("s1", R, "UP", 0), ("s2", R, "UP", 0), ("s3", R, "no check", 0)]),
]


@pytest.mark.parametrize(("tag", "expected"), MERGED, ids=[t for t, _ in MERGED])
def test_merge_servers(tag: str, expected: list[tuple[str, AdminState, str, int]]) -> None:
    got = merge_servers(stat(tag), state(tag), "app")
    assert [replace(s, errors=()) for s in got] == [
        ServerState("app", name, admin, status, n) for name, admin, status, n in expected
    ]
    # the captures were taken with no failed request: every error counter is there, and zero
    assert all(s.errors == (0, 0, 0, 0, 0) for s in got), got


def test_error_counters_are_read_by_name_and_blanks_count_zero() -> None:
    header = "# pxname,svname,status,scur,hrsp_5xx,econ,eresp,wretr,wredis,\n"
    text = header + "app,s1,UP,3,7,2,1,4,5,\napp,s2,UP,0,,,,,,\n"
    rows = {r.name: r for r in parse_stat(text)}
    assert error_counters(rows["s1"]) == (7, 2, 1, 4, 5)
    assert error_counters(rows["s2"]) == (0, 0, 0, 0, 0)


# `show stat` alone: same answers except where the status hides the admin state.
STAT_ONLY_DIFFERS = {("down", "s1"): R, ("transitions", "s1"): R}


@pytest.mark.parametrize(("tag", "expected"), MERGED, ids=[t for t, _ in MERGED])
def test_servers_from_stat(tag: str, expected: list[tuple[str, AdminState, str, int]]) -> None:
    got = servers_from_stat(stat(tag), "app")
    want = [
        ServerState("app", name, STAT_ONLY_DIFFERS.get((tag, name), admin), status, n)
        for name, admin, status, n in expected
    ]
    assert got == want


@pytest.mark.parametrize(
    ("tag", "server", "op", "bits", "weight", "health"),
    [
        ("up", "s1", OpState.RUNNING, 0, 1, 3),
        ("drain", "s1", OpState.RUNNING, 0x08, 1, 3),
        ("maint", "s2", OpState.STOPPED, 0x01, 1, 0),
        ("ready", "s2", OpState.RUNNING, 0, 1, 2),
        ("down", "s1", OpState.STOPPED, 0x08, 1, 0),
        ("transitions", "s3", OpState.STOPPED, 0, 1, 1),
        ("nocheck_weight0", "s2", OpState.RUNNING, 0, 0, 3),
    ],
)
def test_parse_servers_state(tag: str, server: str, op: OpState, bits: int, weight: int, health: int) -> None:
    rows = {r.server: r for r in parse_servers_state(state(tag))}
    assert set(rows) == {"s1", "s2", "s3"}
    row = rows[server]
    assert (row.backend, row.address, row.op_state, row.admin_bits, row.user_weight, row.check_health) == (
        "app",
        "127.0.0.1",
        op,
        bits,
        weight,
        health,
    )
    assert row.fields["srv_port"] == str(18000 + int(server[1]))


def test_parse_stat_keeps_every_row_and_column() -> None:
    rows = parse_stat(stat("drain"))
    assert [(r.proxy, r.name) for r in rows] == [
        ("fe_main", "FRONTEND"),
        ("app", "s1"),
        ("app", "s2"),
        ("app", "s3"),
        ("app", "BACKEND"),
    ]
    backend = rows[-1]
    assert backend.sessions == 6
    assert rows[1].fields["check_status"] == "L7OK"
    assert rows[1].fields["addr"] == "127.0.0.1:18001"


def test_proxies_and_unknown_backend() -> None:
    assert proxies_in_stat(stat("up")) == ["app"]
    assert servers_from_stat(stat("up"), "nope") == []


# 0x05 = FMAINT + CMAINT (`disabled` in the config); 0x09 cannot happen (maint clears drain) but HAProxy
# ranks MAINT first; 0x04 and 0x40 are markers that do not change traffic.
@pytest.mark.parametrize(
    ("bits", "admin"),
    [
        (0, R),
        (0x01, M),
        (0x02, M),
        (0x20, M),
        (0x05, M),
        (0x08, D),
        (0x10, D),
        (0x09, M),
        (0x04, R),
        (0x40, R),
    ],
)
def test_admin_from_bits(bits: int, admin: AdminState) -> None:
    assert admin_from_bits(bits) is admin


@pytest.mark.parametrize(
    ("status", "admin"),
    [
        ("UP", R),
        ("UP 1/2", R),
        ("DOWN", R),
        ("DOWN 1/2", R),
        ("no check", R),
        ("NOLB", R),
        ("DRAIN", D),
        ("MAINT", M),
        ("MAINT (via app/s1)", M),
        ("MAINT (resolution)", M),
    ],
)
def test_admin_from_status(status: str, admin: AdminState) -> None:
    assert admin_from_status(status) is admin


# Answers HAProxy 2.6 gives instead of data (seen on the runtime socket).
@pytest.mark.parametrize("answer", ["No such proxy.\n", "", "Unknown command.\n"])
def test_parse_stat_rejects_non_csv(answer: str) -> None:
    with pytest.raises(LoadBalancerError, match="show stat"):
        parse_stat(answer)


@pytest.mark.parametrize("answer", ["Can't find backend.\n", "", "2\n# be_id be_name\n"])
def test_parse_servers_state_rejects_unknown_format(answer: str) -> None:
    with pytest.raises(LoadBalancerError, match="show servers state"):
        parse_servers_state(answer)


def test_parse_servers_state_rejects_short_row() -> None:
    text = "1\n# be_id be_name srv_id srv_name\n3 app 1\n"
    with pytest.raises(LoadBalancerError, match="3 of 4 fields"):
        parse_servers_state(text)


def info(tag: str = "") -> str:
    return (DATA / f"haproxy_show_info{tag}.txt").read_text()


def test_parse_info_reads_the_process() -> None:
    got = parse_info(info())
    assert (got.pid, got.uptime_sec, got.start_time_sec) == (27845, 1, 1796165044)
    assert (got.version, got.node) == ("2.6.12-1+deb12u4", "vm")


def test_the_identity_changes_on_reload_and_only_then() -> None:
    first, again, reloaded = parse_info(info()), parse_info(info()), parse_info(info("_reloaded"))
    assert first.identity == again.identity
    assert reloaded.pid == 27864 and reloaded.identity != first.identity


def test_a_reused_pid_is_another_process() -> None:
    later = info().replace("Start_time_sec: 1796165044", "Start_time_sec: 1796169999")
    assert parse_info(later).pid == parse_info(info()).pid
    assert parse_info(later).identity != parse_info(info()).identity


def test_without_a_start_time_the_pid_is_the_identity() -> None:
    old = "\n".join(line for line in info().splitlines() if not line.startswith("Start_time_sec"))
    got = parse_info(old)
    assert got.start_time_sec is None and got.identity == "vm/27845@?"


@pytest.mark.parametrize("answer", ["", "Unknown command.\n", "Name: HAProxy\nPid: x\n"])
def test_parse_info_rejects_what_is_not_show_info(answer: str) -> None:
    with pytest.raises(LoadBalancerError, match="show info"):
        parse_info(answer)


# (haproxy.cfg, backend "app": kept?, words of the reason)
KEEPING = [
    (
        "global\n  server-state-file /run/haproxy/state\ndefaults\n  load-server-state-from-file global\n"
        "backend app\n  server s1 10.0.0.1:80 check\n",
        True,
        "server-state-file /run/haproxy/state",
    ),
    (
        "global\n  server-state-file /s # saved\nbackend app\n  load-server-state-from-file global\n",
        True,
        "global",
    ),
    (
        "global\n  server-state-base /var/state\nlisten app\n  load-server-state-from-file local\n",
        True,
        "/var/state/app",
    ),
    (
        "global\n  stats socket /s level admin\ndefaults\n  mode http\nbackend app\n",
        False,
        "no server-state-file",
    ),
    ("global\n  server-state-file /s\nbackend app\n", False, "no load-server-state-from-file"),
    (
        "defaults\n  load-server-state-from-file global\nbackend app\n",
        False,
        "no server-state-file in global",
    ),
    (
        "global\n  server-state-file /s\ndefaults\n  load-server-state-from-file global\n"
        "backend app\n  load-server-state-from-file none\n",
        False,
        "none",
    ),
    # A backend follows the last defaults section before it, or the one it names.
    (
        "global\n  server-state-file /s\ndefaults\n  load-server-state-from-file global\n"
        "defaults plain\n  mode http\nbackend app\n",
        False,
        "no load-server-state-from-file",
    ),
    (
        "global\n  server-state-file /s\ndefaults keep\n  load-server-state-from-file global\n"
        "defaults plain\n  mode http\nbackend app from keep\n",
        True,
        "global",
    ),
    # Commented out is not there; another backend's setting is not this one's.
    (
        "global\n  # server-state-file /s\nbackend app\n  load-server-state-from-file global\n",
        False,
        "no server-state-file",
    ),
    (
        "global\n  server-state-file /s\nbackend other\n  load-server-state-from-file global\nbackend app\n",
        False,
        "no load-server-state-from-file",
    ),
    ("global\n  server-state-file /s\nbackend web\n", False, "no backend 'app'"),
]


@pytest.mark.parametrize(("config", "kept", "why"), KEEPING)
def test_server_state_keeping(config: str, kept: bool, why: str) -> None:
    got = server_state_keeping(config, "app")
    assert (got.kept, why in got.why) == (kept, True), got
