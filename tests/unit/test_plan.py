"""Batch planning and durations: pure functions, table-tested."""

from __future__ import annotations

import pytest

from orchestrator.model.plan import batch_size, plan_batches
from orchestrator.model.yamlfile import parse_duration

H = [f"h{i}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("hosts", "sizes", "expected"),
    [
        (H[:3], [1], [["h1"], ["h2"], ["h3"]]),
        (H[:6], [1, 2, "50%"], [["h1"], ["h2", "h3"], ["h4", "h5", "h6"]]),
        # percentages are of the whole pool, the last size repeats
        (H, [1, 2, "50%"], [["h1"], ["h2", "h3"], H[3:8], H[8:]]),
        (H, ["25%"], [H[0:3], H[3:6], H[6:9], H[9:]]),  # 2.5 rounds up to 3
        (H[:3], ["34%"], [["h1", "h2"], ["h3"]]),  # 1.02 rounds up to 2
        (H[:3], ["1%"], [["h1"], ["h2"], ["h3"]]),  # never below one host
        (H[:5], ["100%"], [H[:5]]),
        (H[:3], [10], [H[:3]]),  # larger than the pool
        (H[:3], [1, 50], [["h1"], ["h2", "h3"]]),
        (H[:3], [5, 1], [H[:3]]),  # sizes never used are fine
        (["solo"], [1], [["solo"]]),
        (["solo"], ["50%"], [["solo"]]),
        (["solo"], [1, 2, "50%"], [["solo"]]),
        ([], [1], []),
    ],
)
def test_plan_batches(hosts: list[str], sizes: list[int | str], expected: list[list[str]]) -> None:
    batches = plan_batches(hosts, sizes)
    assert batches == expected
    assert [h for batch in batches for h in batch] == hosts  # every host once, in order
    assert all(batches)


def test_plan_batches_keeps_the_given_order() -> None:
    assert plan_batches(["c", "a", "b"], [2]) == [["c", "a"], ["b"]]


def test_plan_batches_needs_a_size() -> None:
    with pytest.raises(ValueError, match="no batch sizes"):
        plan_batches(H, [])


@pytest.mark.parametrize(
    ("size", "pool", "n"),
    [(3, 10, 3), ("10%", 10, 1), ("25%", 10, 3), ("50%", 3, 2), ("99%", 100, 99), ("1%", 1, 1)],
)
def test_batch_size(size: int | str, pool: int, n: int) -> None:
    assert batch_size(size, pool) == n


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("150ms", 0.15),
        ("2s", 2.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("90", 90.0),
        (" 30s ", 30.0),
        ("1 h", 3600.0),
        ("0s", 0.0),
        (3, 3.0),
        (0, 0.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize(
    "value", ["abc", "", "s", "1d", "-1s", "1hm", "1h30m", "ms", -1, -0.5, True, None, [1], {}]
)
def test_parse_duration_refuses_with_examples(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; a number of seconds or e\.g\. '500ms'"):
        parse_duration(value)
