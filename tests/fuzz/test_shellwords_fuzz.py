"""The long differential fuzz of orchestrator.model.shellwords (see tests/shellfuzz.py): it runs until
ORCH_FUZZ_SECONDS have passed, and is skipped without it.

    ORCH_FUZZ_SECONDS=660 ORCH_FUZZ_SEED=1 .venv/bin/pytest -q tests/fuzz -p no:cacheprovider -s

It prints the figures (scripts generated and accepted, runs per shell) and writes them with every failure,
shrunk, to ORCH_FUZZ_REPORT (default .orchestrator/shellwords-fuzz-SEED.json). A failure is an accepted
script that ran a hostile value, a benign value that did not come through, a crash or a slow answer."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from orchestrator.model.shellwords import UNREAD, misplaced
from tests.shellfuzz import AVAILABLE, Stats, fuzz

SECONDS = float(os.environ.get("ORCH_FUZZ_SECONDS", "0"))
SEED = int(os.environ.get("ORCH_FUZZ_SEED", "1"))

pytestmark = pytest.mark.skipif(not SECONDS, reason="set ORCH_FUZZ_SECONDS to run the long fuzz")


REPORT = Path(os.environ.get("ORCH_FUZZ_REPORT", f".orchestrator/shellwords-fuzz-{SEED}.json"))


def write_report(stats: Stats, t0: float, c0: float) -> dict[str, object]:
    report = {
        "seed": SEED,
        "seconds": round(time.monotonic() - t0, 1),
        "python_cpu_seconds": round(time.process_time() - c0, 1),
        "generated": stats.generated,
        "accepted": stats.accepted,
        "runs_per_shell": dict(stats.runs),
        "failures": [asdict(f) for f in stats.failures],
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    return report


@pytest.mark.timeout(int(SECONDS) + 600)  # the project's 600 s per test would cut a long run short
def test_fuzz_against_real_shells() -> None:
    assert len(AVAILABLE) == 3, "needs bash, dash and busybox"
    t0, c0 = time.monotonic(), time.process_time()
    last = [t0]

    def until(stats: Stats) -> bool:
        if time.monotonic() - last[0] > 60:  # a killed run still leaves its figures
            write_report(stats, t0, c0)
            last[0] = time.monotonic()
        return time.monotonic() - t0 > SECONDS or len(stats.failures) >= 20

    stats = fuzz(SEED, until)
    report = write_report(stats, t0, c0)
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}))
    for f in stats.failures:
        print(f)
    assert not stats.failures


def test_garbage_never_crashes_and_stays_quick() -> None:
    """Character soup, up to 64 KiB: no exception, no give-up, well under a second."""
    rng, t0 = random.Random(SEED), time.monotonic()
    alphabet = [*" \n\t;&|()<>{}[]$`'\"\\#~!*=-+:/,aeiou0123", "\x1e0\x1e", "\x1e1\x1e", "<<E\n", "\nE\n"]
    while time.monotonic() - t0 < min(SECONDS / 10, 60):
        script = "".join(rng.choice(alphabet) for _ in range(rng.choice([10, 100, 1000, 20_000])))[:65_536]
        t1 = time.perf_counter()
        got = misplaced(script)
        assert time.perf_counter() - t1 < 1.0, script[:200]
        assert all(m.where != UNREAD for m in got), script[:200]
