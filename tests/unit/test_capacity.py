"""The capacity guard and the strategy checks that need the pool: table-driven, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.loadbalancers.base import AdminState, ServerState
from orchestrator.app.submit import load_spec
from orchestrator.engine.rollout.capacity import may_drain, picture
from orchestrator.errors import InputError
from orchestrator.model.plan import capacity_floor_of
from tests.unit.fakes import GOOD_PLAYBOOK, marked_line, write_inputs

UP = ("UP", AdminState.READY)
DOWN = ("DOWN", AdminState.READY)
MAINT = ("MAINT", AdminState.MAINT)
DRAIN = ("DRAIN", AdminState.DRAIN)


def pool(*states: tuple[str, AdminState]) -> list[ServerState]:
    return [ServerState("app", f"s{i}", admin, status, 0) for i, (status, admin) in enumerate(states, 1)]


@pytest.mark.parametrize(
    ("min_healthy", "max_unavailable", "size", "floor"),
    [
        (None, None, 4, 0),
        (3, None, 4, 3),
        ("75%", None, 4, 3),
        ("70%", None, 4, 3),  # rounds up: never fewer than asked
        (None, 1, 4, 3),
        (None, "25%", 4, 3),
        (None, "10%", 4, 3),  # rounds down, but at least one server may go
        (None, "50%", 5, 3),
        ("50%", 1, 4, 3),  # the stricter of the two
        (1, 2, 4, 2),
        (None, 0, 4, 3),
    ],
)
def test_capacity_floor(
    min_healthy: int | str | None, max_unavailable: int | str | None, size: int, floor: int
) -> None:
    assert capacity_floor_of(min_healthy, max_unavailable, size) == floor


@pytest.mark.parametrize(
    ("servers", "ours_out", "floor", "allowed"),
    [
        (pool(UP, UP, UP, UP), set(), 3, True),
        (pool(UP, UP, UP, DOWN), set(), 3, False),  # another server is down for its own reasons
        (pool(UP, UP, UP, MAINT), set(), 3, False),
        (pool(UP, UP, UP, MAINT), set(), 2, True),
        (pool(UP, DRAIN, UP, UP), {"s2"}, 3, False),  # our own host already out counts
        (pool(UP, UP, UP, UP), {"s2"}, 3, False),  # ... even before HAProxy shows it out
        (pool(UP, UP, UP, UP), {"s2"}, 2, True),
        (pool(DOWN, UP, UP, UP), set(), 3, True),  # s1 itself is down: draining it costs nothing
        (pool(UP, UP), set(), 0, True),
    ],
)
def test_may_drain_s1(servers: list[ServerState], ours_out: set[str], floor: int, allowed: bool) -> None:
    capacity = picture(servers, floor, ours_out)
    assert may_drain(capacity, "s1") is allowed
    assert f"floor {floor}" in capacity.describe()


STRATEGY = 'strategy: {batches: [1, "50%"], on_failure: halt}'


@pytest.mark.parametrize(
    ("strategy", "problem", "fix"),
    [
        (
            "strategy: {batches: [1], min_healthy: 3}  # <-",
            "the capacity floor is 3 of the pool's 3 hosts",
            "leaves at least one server",
        ),
        (
            "strategy: {batches: [1], min_healthy: 5}  # <-",
            "the capacity floor is 5 of the pool's 3 hosts",
            "leaves at least one server",
        ),
        (
            "strategy: {batches: [1], approve_after: [3]}  # <-",
            "approve_after [3] but the plan has 3 batches",
            "from 1 to 2",
        ),
        (
            "strategy: {batches: [1], on_failure: continue}  # <-",
            "continue with no failure budget",
            "failure_budget",
        ),
        ("strategy: {batches: [1], max_unavailable: -1}  # <-", "max_unavailable -1 is negative", "a number"),
        (
            "strategy: {batches: [1], approve_after: [0]}  # <-",
            "approve_after lists batch numbers from 1",
            "[1]",
        ),
    ],
)
def test_strategy_errors_at_validate(tmp_path: Path, strategy: str, problem: str, fix: str) -> None:
    text = GOOD_PLAYBOOK.replace(STRATEGY, strategy)
    assert text != GOOD_PLAYBOOK
    book, inventory = write_inputs(tmp_path, playbook=text)
    with pytest.raises(InputError) as raised:
        load_spec(book, inventory)
    assert str(raised.value).startswith(f"{book}:{marked_line(text)}: "), str(raised.value)
    assert problem in str(raised.value) and fix in str(raised.value)
