"""Words and numbers as both renderings of the change report print them (HTML and Markdown): the
sections in order, times as ISO 8601 UTC, durations, counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

SECTIONS = (
    ("request", "Request"),
    ("assessment", "Assessment"),
    ("approval", "Approval"),
    ("implementation", "Implementation"),
    ("testing", "Testing"),
    ("fallback", "Fall-back"),
    ("availability", "Availability"),
    ("communication", "Communication"),
    ("audit", "Audit trail"),
)


def iso_utc(t: float | None, none: str = "\u2014") -> str:
    """Unix seconds as ISO 8601 UTC to the second (``2026-03-02T09:00:00Z``); ``none`` for null."""
    if t is None:
        return none
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_text(seconds: float) -> str:
    """A duration a reader takes in at a glance: ``0.4 s``, ``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def took(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "\u2014"
    return seconds_text(max(end - start, 0.0))


def yes_no(value: bool | None, none: str = "not applicable") -> str:
    return none if value is None else ("yes" if value else "no")


def measured_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def counters_text(counters: Mapping[str, int]) -> str:
    """Non-zero counters as ``name n``; "none" when all are zero."""
    shown = [f"{name} {value}" for name, value in sorted(counters.items()) if value]
    return ", ".join(shown) if shown else "none"


def host_states(hosts: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(str(host["state"]) for host in hosts)
    return ", ".join(f"{n} {state}" for state, n in counts.most_common())
