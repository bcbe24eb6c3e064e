"""Who and why on every change, four eyes, and the availability figures: the rules, on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.app.availability import availability, errors_between
from orchestrator.app.identity import actor, reason
from orchestrator.engine.rollout import operations
from orchestrator.errors import InputError, RolloutRefused
from orchestrator.model.records import Step
from orchestrator.model.spec import ChangeRequest, Document
from orchestrator.model.states import RolloutState
from orchestrator.store import audit
from orchestrator.store.audit import body_of
from orchestrator.store.samples import Sample
from tests.unit.fakes import host_spec, rollout_spec
from tests.unit.test_coordinator import RID, farm

# --- who ---------------------------------------------------------------------------------------------


def test_the_actor_is_as_then_orch_actor_then_the_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    assert actor("alice", {"ORCH_ACTOR": "bob"}) == "alice"
    assert actor(None, {"ORCH_ACTOR": "bob@hospital.example"}) == "bob@hospital.example"
    assert actor(None, {}) == "root"
    assert actor("Dr. Anne-Marie Lefèvre (on call)", {}) == "Dr. Anne-Marie Lefèvre (on call)"


@pytest.mark.parametrize(
    ("given", "where"),
    [
        ("alice\nbob", "--as"),
        ("alice; rm -rf /", "--as"),
        ("<script>", "--as"),
        (" alice", "--as"),
        ("a" * 121, "--as"),
        ("\x1b[31mred", "--as"),
    ],
)
def test_a_name_that_is_not_a_name_is_refused_saying_where(given: str, where: str) -> None:
    with pytest.raises(InputError, match=rf"^{where}: .* is not a name to record; 1 to 120 letters"):
        actor(given, {})


def test_orch_actor_is_checked_too() -> None:
    with pytest.raises(InputError, match=r"^ORCH_ACTOR: "):
        actor(None, {"ORCH_ACTOR": "x\ty"})


def test_a_reason_is_one_clean_line_and_required_where_the_action_undoes() -> None:
    assert reason("  canary healthy  ") == "canary healthy"
    assert reason(None) == ""
    with pytest.raises(InputError, match=r"^--reason: abort needs a reason"):
        reason("   ", required_for="abort")
    for bad in ("line one\nline two", "bell\x07", "x" * 1001):
        with pytest.raises(InputError, match=r"^--reason: .* is not a reason to record"):
            reason(bad)


# --- operations --------------------------------------------------------------------------------------


def request(by: str) -> ChangeRequest:
    document = Document(path="/p/x.yaml", sha256="0" * 64, text="")
    return ChangeRequest(requested_by=by, requested_at=0.0, playbook=document, inventory=document)


@pytest.mark.parametrize("action", ["abort", "rollback", "reject"])
def test_undoing_without_a_reason_is_refused_and_changes_nothing(tmp_path: Path, action: str) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], approve_after=[1])
    f.start()
    f.run()
    with f.store.session() as s:
        before = audit.head(s)
    with pytest.raises(InputError, match=rf"^--reason: {action} needs a reason"):
        getattr(operations, action)(f.store, f.scheduler, RID, "carol", "")
    assert f.rollout().state is RolloutState.AWAITING_APPROVAL and f.actions() == ["approval_requested"]
    with f.store.session() as s:
        assert audit.head(s) == before  # not even a record: nothing happened


def test_four_eyes_refuses_the_requester_and_takes_someone_else(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], approve_after=[1], four_eyes=True, request=request("alice"))
    f.start()
    f.run()
    for decide in (operations.approve, operations.reject):
        with pytest.raises(RolloutRefused, match=r"needs four eyes: alice requested it and cannot"):
            decide(f.store, f.scheduler, RID, "alice", "looks fine")
    assert f.rollout().state is RolloutState.AWAITING_APPROVAL
    operations.approve(f.store, f.scheduler, RID, "bob", "canary healthy")
    (approval,) = [a for a in f.store.action_log(RID) if a.action == "approve"]
    assert (approval.actor, approval.reason, approval.batch) == ("bob", "canary healthy", 1)


def test_without_four_eyes_the_requester_may_approve(tmp_path: Path) -> None:
    f = farm(tmp_path, [["web1"], ["web2"]], approve_after=[1], request=request("alice"))
    f.start()
    f.run()
    operations.approve(f.store, f.scheduler, RID, "alice", "")
    assert f.rollout().state is RolloutState.RUNNING


# --- availability ------------------------------------------------------------------------------------


def sample(at: float, in_service: int, errors: dict[str, list[int]]) -> Sample:
    return Sample(at, in_service, 3, 0, {name: [1, 0, *counts] for name, counts in errors.items()})


def test_errors_count_growth_and_a_counter_reset_by_a_reload_counts_from_zero() -> None:
    samples = [
        sample(0.0, 3, {"s1": [5, 0, 0, 0, 0], "s2": [1, 0, 0, 0, 0]}),
        sample(1.0, 2, {"s1": [7, 1, 0, 0, 0], "s2": [1, 0, 0, 0, 0]}),
        sample(2.0, 2, {"s1": [2, 0, 0, 3, 0], "s2": [1, 0, 0, 0, 0]}),  # HAProxy reloaded: s1 reset
        sample(3.0, 3, {"s1": [2, 0, 0, 3, 0], "s2": [4, 0, 0, 0, 1], "s3": [9, 9, 9, 9, 9]}),
    ]
    assert errors_between(samples, 0.0, None) == {
        "http_5xx": 2 + 2 + 3,
        "connection_errors": 1,
        "response_errors": 0,
        "retries": 3,
        "redispatches": 1,
    }  # s3 appeared only in the last sample: nothing to compare it with
    assert errors_between(samples, 1.5, 3.0)["http_5xx"] == 3


def test_availability_figures_from_samples_and_steps() -> None:
    spec = rollout_spec(hosts=[host_spec("web1"), host_spec("web2"), host_spec("web3")], min_healthy=2)
    samples = [sample(t, n, {}) for t, n in ((0.0, 3), (1.0, 2), (2.0, 1), (3.0, 3), (4.0, 3))]
    steps = [Step(1, "web1", "drain", 1, 0.5, 2.5, "ok", "", 0.0, None, "")]
    figures = availability(samples, spec, steps)
    assert (figures["servers"], figures["floor"], figures["lowest_in_service"]) == (3, 2, 1)
    assert figures["seconds_observed"] == 4.0 and figures["seconds_at_full_capacity"] == 2.0
    assert figures["seconds_below_floor"] == 1.0 and figures["interval"] == 1.0
    assert [h["host"] for h in figures["per_host"]] == ["web1"]
    assert figures["series"][1] == [1.0, 2, 0]


def test_availability_without_samples_says_nothing_was_observed() -> None:
    figures = availability([], rollout_spec(), [])
    assert figures["samples"] == 0 and figures["lowest_in_service"] is None
    assert figures["seconds_observed"] == 0.0 and figures["series"] == []


def test_an_append_never_fails_on_what_a_server_answered() -> None:
    """Output with a lone surrogate (undecodable bytes kept by surrogateescape), a number beyond what
    canonical JSON carries, NaN: the change is recorded all the same, in a form JSON can hold."""
    body = body_of(3, 1.5, "step.ended", "R1", {"detail": "bad \udcff byte", "n": 2**60, "x": float("nan")})
    fields = json.loads(body)
    assert fields["detail"] == "bad ? byte" and fields["n"] == str(2**60) and fields["x"] == "nan"
