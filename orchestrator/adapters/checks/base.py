"""A health check answers one probe; the engine decides how many passes make a host stable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str  # one line: what was seen, e.g. "HTTP 200, version=2" or "connection refused"


class Check(Protocol):
    name: str

    def probe(self) -> CheckResult: ...
