"""LoadReport arithmetic and version parsing: pure, no sockets."""

from __future__ import annotations

import math

import pytest

from orchestrator.errors import InputError
from orchestrator.lab.load import LoadReport, Request, parse_version


def ok(latency_ms: float, phase: str = "run", version: str | None = "1", started: float = 0.0) -> Request:
    return Request(started, latency_ms / 1000.0, True, 200, version, None, phase)


def bad(phase: str = "run", status: int | None = None, started: float = 0.0) -> Request:
    error = f"HTTP {status}" if status else "ConnectionRefusedError: [Errno 111] Connection refused"
    return Request(started, 0.001, False, status, None, error, phase)


HUNDRED = LoadReport.of([ok(float(ms)) for ms in range(100, 0, -1)])  # 1..100 ms, shuffled order


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 1.0),
        (0.01, 1.0),
        (0.07, 7.0),
        (0.29, 29.0),
        (0.5, 50.0),
        (0.9, 90.0),
        (0.99, 99.0),
        (0.995, 100.0),
        (1.0, 100.0),
    ],
)
def test_nearest_rank_percentiles(q: float, expected: float) -> None:
    assert HUNDRED.latency_ms(q) == pytest.approx(expected)


def test_percentile_of_one_value_is_that_value() -> None:
    report = LoadReport.of([ok(7.0)])
    assert report.latency_ms(0.0) == report.latency_ms(0.5) == report.latency_ms(1.0) == pytest.approx(7.0)


def test_percentiles_ignore_failures_and_filter_by_phase() -> None:
    report = LoadReport.of(
        [ok(10.0, "before"), ok(20.0, "before"), ok(500.0, "during"), bad("during"), bad("during", 502)]
    )
    assert report.latency_ms(1.0, "before") == pytest.approx(20.0)
    assert report.latency_ms(0.5, "during") == pytest.approx(500.0)
    assert report.latency_ms(1.0) == pytest.approx(500.0)
    assert math.isnan(report.latency_ms(0.5, "after"))


@pytest.mark.parametrize("q", [-0.1, 1.01, 50.0])
def test_quantile_outside_0_1_is_refused(q: float) -> None:
    with pytest.raises(InputError, match="outside"):
        HUNDRED.latency_ms(q)


def test_counts_failures_and_versions() -> None:
    report = LoadReport.of(
        [
            ok(1.0, version="1"),
            ok(1.0, version="2"),
            ok(1.0, version="2"),
            ok(1.0, version=None),
            bad(status=503),
        ]
    )
    assert (report.sent, report.failed) == (5, 1)
    assert [r.status for r in report.failures()] == [503]
    assert report.versions() == {"1": 1, "2": 2}


def test_of_sorts_by_start_time() -> None:
    report = LoadReport.of([ok(1.0, started=3.0), ok(1.0, started=1.0), ok(1.0, started=2.0)])
    assert [r.started for r in report.requests] == [1.0, 2.0, 3.0]


def test_summary_is_one_line_with_phases_in_order() -> None:
    report = LoadReport.of(
        [
            ok(10.0, "before", "1", 1.0),
            ok(30.0, "during", "1", 2.0),
            bad("during", 502, 3.0),
            ok(20.0, "after", "2", 4.0),
        ]
    )
    text = report.summary()
    assert "\n" not in text
    assert text == (
        "sent=4 failed=1 | before: n=1 failed=0 p50=10.0ms p99=10.0ms | during: n=2 failed=1 p50=30.0ms "
        "p99=30.0ms | after: n=1 failed=0 p50=20.0ms p99=20.0ms | versions 1=2 2=1"
    )


def test_summary_of_a_phase_without_successes() -> None:
    assert LoadReport.of([bad("down")]).summary() == "sent=1 failed=1 | down: n=1 failed=1 p50=- p99=-"


def test_empty_report() -> None:
    report = LoadReport.of([])
    assert (report.sent, report.failed, report.failures(), report.summary()) == (0, 0, [], "sent=0 failed=0")
    assert math.isnan(report.latency_ms(0.5))


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("2", b"version=1\n", "2"),  # the header wins
        (None, b"version=2\n", "2"),
        (None, b'{"status":"ok","version":"2.1"}\n', "2.1"),
        (None, b'{"version": 3}', "3"),
        (None, b"<p>running version: 1.4-rc1</p>", "1.4-rc1"),
        ("  ", b"version=5", "5"),
        (None, b"hello", None),
        (None, b"", None),
        (None, b'{"status":"ok"}', None),
        (None, b"\xff\xfe version=9", "9"),
    ],
)
def test_parse_version(header: str | None, body: bytes, expected: str | None) -> None:
    assert parse_version(header, body) == expected
