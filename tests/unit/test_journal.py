"""What the journal says, step by step, for each way a host can go: the record `status`, `history` and
an auditor read. Each path is pinned whole (step, outcome, detail), because a step's detail is the
only place that says why it ended (a mutation run found these words unchecked)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.errors import HypervisorError
from orchestrator.model.playbook import Sessions
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState
from tests.unit.fakes import Rig, host_spec, rig, rollout_spec

S = HostState
Row = tuple[str, str, str]

DRAINED: list[Row] = [("drain", "ok", "no connections left"), ("maint", "ok", "maint")]
SNAPSHOT: Row = ("snapshot", "ok", "snapshot orch-R1 of web1-vm")
UPDATE: list[Row] = [("update[0]", "ok", "upload app.tgz"), ("update[1]", "ok", "exit 0 in 0.01s")]
NEW_FAILS: Row = ("checks", "failed", "checks did not pass after 10s: http new: HTTP 503")
REVERTED: list[Row] = [
    ("revert", "ok", "reverted web1-vm to orch-R1"),
    ("verify_old", "ok", "old version healthy: HTTP 200"),
]
STABLE_AND_BACK: list[Row] = [("checks", "ok", "stable: HTTP 200"), ("return", "ok", "UP")]
STILL_OPEN = "3 connections still open after the drain timeout (3s); server left in service, nothing changed"
STILL_UNHEALTHY = (
    "the reverted server is still unhealthy; it stays OUT of the pool after 10s: http old: HTTP 503"
)
NEVER_UP = "restore: the load balancer still reports 'DOWN' after 10s"
HELD = (
    "snapshot",
    "held",
    "the hypervisor does not answer: libvirt did not answer within 300s; back in service untouched",
)


def journal(r: Rig) -> list[Row]:
    return [(s.step, s.outcome, s.detail) for s in r.journal.steps]


def walk(r: Rig) -> tuple[HostState, Progress]:
    """Drive the host until it ends, or is back in PENDING after having begun (put back to wait)."""
    state, progress = S.PENDING, Progress()
    while True:
        state, progress, delay = r.pipeline.advance(state, progress)
        if delay is None or (state is S.PENDING and r.journal.steps):
            return state, progress
        r.clock.advance(max(delay, 0.001))


def _sessions(on_timeout: str) -> Rig:
    host = host_spec("web1").model_copy(update={"session_probe": "count-sessions"})
    sessions = Sessions(probe="count-sessions", interval=0.5, on_timeout=on_timeout)  # type: ignore[arg-type]
    r = rig(rollout_spec([host], drain_timeout=3.0, sessions=sessions))
    r.remotes.stdout["count-sessions"] = "3"
    return r


def _connections(drain_on_timeout: str) -> Rig:
    r = rig(rollout_spec(drain_timeout=3.0, drain_on_timeout=drain_on_timeout))
    r.lb.sessions["web1"] = 3
    return r


def _silent_hypervisor() -> Rig:
    r = rig()
    r.snaps.errors["create"] = [
        HypervisorError("libvirt did not answer within 300s", domain="web1-vm", unanswered=True)
    ]
    return r


def _unhealthy(*labels: str) -> Callable[[], Rig]:
    def build() -> Rig:
        r = rig()
        for label in labels:
            r.checks.healthy[label] = False
        return r

    return build


def _never_up(build: Callable[[], Rig]) -> Callable[[], Rig]:
    def setup() -> Rig:
        r = build()
        r.lb.statuses_after_ready = ["DOWN"]
        return r

    return setup


PATHS: list[tuple[str, Callable[[], Rig], HostState, str, list[Row]]] = [
    ("succeeded", rig, S.SUCCEEDED, "", [*DRAINED, SNAPSHOT, *UPDATE, *STABLE_AND_BACK]),
    (
        "no snapshot provider",
        lambda: rig(snapshots=False),
        S.SUCCEEDED,
        "",
        [*DRAINED, ("snapshot", "ok", "no snapshot provider"), *UPDATE, *STABLE_AND_BACK],
    ),
    (
        "hypervisor silent before the snapshot",
        _silent_hypervisor,
        S.PENDING,
        "",
        [*DRAINED, HELD, ("restore", "ok", "back in service untouched; waiting for the hypervisor")],
    ),
    (
        "hypervisor silent, then the load balancer never says UP",
        _never_up(_silent_hypervisor),
        S.FAILED_OUT,
        NEVER_UP,
        [*DRAINED, HELD, ("restore", "failed", NEVER_UP)],
    ),
    (
        "new version unhealthy: rolled back",
        _unhealthy("http new"),
        S.ROLLED_BACK,
        NEW_FAILS[2],
        [
            *DRAINED,
            SNAPSHOT,
            *UPDATE,
            NEW_FAILS,
            *REVERTED,
            ("restore", "ok", "back in pool on the old version"),
        ],
    ),
    (
        "rolled back, then the load balancer never says UP",
        _never_up(_unhealthy("http new")),
        S.FAILED_OUT,
        NEVER_UP,
        [*DRAINED, SNAPSHOT, *UPDATE, NEW_FAILS, *REVERTED, ("restore", "failed", NEVER_UP)],
    ),
    (
        "the reverted server is still unhealthy",
        _unhealthy("http new", "http old"),
        S.FAILED_OUT,
        STILL_UNHEALTHY,
        [
            *DRAINED,
            SNAPSHOT,
            *UPDATE,
            NEW_FAILS,
            REVERTED[0],
            (
                "verify_old",
                "failed",
                STILL_UNHEALTHY,
            ),
        ],
    ),
    (
        "connections never end: failed, nothing changed",
        lambda: _connections(drain_on_timeout="fail"),
        S.FAILED,
        STILL_OPEN,
        [
            ("drain", "failed", STILL_OPEN),
            ("restore", "ok", "back in pool on the old version"),
        ],
    ),
    (
        "connections never end: forced",
        lambda: _connections(drain_on_timeout="force"),
        S.SUCCEEDED,
        "",
        [
            ("drain", "ok", "drain timeout: forcing with 3 connections left"),
            DRAINED[1],
            SNAPSHOT,
            *UPDATE,
            *STABLE_AND_BACK,
        ],
    ),
    (
        "user sessions: forced",
        lambda: _sessions("force"),
        S.SUCCEEDED,
        "",
        [
            ("drain", "ok", "drain timeout: forcing with 3 user sessions left"),
            DRAINED[1],
            SNAPSHOT,
            *UPDATE,
            *STABLE_AND_BACK,
        ],
    ),
    (
        "user sessions: postponed",
        lambda: _sessions("postpone"),
        S.PENDING,
        "",
        [
            ("drain", "postponed", "3 user sessions after 3s: postponed to the end"),
            ("restore", "ok", "back in service; postponed"),
        ],
    ),
    (
        "postponed, then the load balancer never says UP",
        _never_up(lambda: _sessions("postpone")),
        S.FAILED_OUT,
        NEVER_UP,
        [
            ("drain", "postponed", "3 user sessions after 3s: postponed to the end"),
            ("restore", "failed", NEVER_UP),
        ],
    ),
    (
        "user sessions: skipped",
        lambda: _sessions("skip"),
        S.SKIPPED,
        "",
        [
            ("drain", "skipped", "3 user sessions after 3s: skipped, left as it was"),
            ("restore", "ok", "back in service; not updated"),
        ],
    ),
    (
        "skipped, then the load balancer never says UP",
        _never_up(lambda: _sessions("skip")),
        S.FAILED_OUT,
        NEVER_UP,
        [
            ("drain", "skipped", "3 user sessions after 3s: skipped, left as it was"),
            ("restore", "failed", NEVER_UP),
        ],
    ),
]


@pytest.mark.parametrize(("build", "end", "error", "rows"), [p[1:] for p in PATHS], ids=[p[0] for p in PATHS])
def test_the_journal_of_each_path(
    build: Callable[[], Rig], end: HostState, error: str, rows: list[Row]
) -> None:
    r = build()
    state, progress = walk(r)
    assert (state, progress.error) == (end, error)
    assert journal(r) == rows


def test_a_succeeded_host_rolled_back_says_so_at_its_maint() -> None:
    r = rig()
    state, progress = r.drive()
    progress.rollback = True
    state, progress = r.drive(state, progress)
    assert state is S.ROLLED_BACK, progress.error
    assert journal(r)[7:] == [
        ("drain", "ok", "no connections left"),
        ("maint", "ok", "maint; rolling back"),
        *REVERTED,
        ("restore", "ok", "back in pool on the old version"),
    ]


def test_a_revert_without_a_snapshot_provider_leaves_the_server_out_and_says_why() -> None:
    r = rig(snapshots=False)
    state, progress, delay = r.pipeline.advance(S.REVERTING, Progress(snapshot="orch-R1"))
    assert (state, delay) == (S.FAILED_OUT, None)
    assert progress.error == "no snapshot provider to revert with"
    assert r.lb.calls == []  # nothing set: the server stays where it was, out of the pool


def test_a_step_that_failed_without_a_command_has_no_exit_code_and_no_output() -> None:
    r = _connections(drain_on_timeout="fail")
    assert r.drive()[0] is S.FAILED
    [drain] = [s for s in r.journal.steps if s.step == "drain"]
    assert (drain.outcome, drain.exit_code, drain.output_tail) == ("failed", None, "")
