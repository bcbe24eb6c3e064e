"""misplaced() against real shells: scripts it accepts must not run a hostile value under bash, dash or
busybox sh, and must pass benign values through intact (see tests/shellfuzz.py). The long version is
tests/fuzz/test_shellwords_fuzz.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator.model.shellwords import misplaced
from tests.shellfuzz import (
    AVAILABLE,
    BENIGN,
    FRAGMENTS,
    SEPARATORS,
    WORD_PARTS,
    Case,
    harmless,
    injection,
    run,
    sandbox,
    substitute,
    variants,
)

pytestmark = pytest.mark.skipif(len(AVAILABLE) < 3, reason="needs bash, dash and busybox")


@pytest.fixture(scope="module")
def sandbox_dir() -> Iterator[Path]:
    with sandbox() as d:
        yield d


def test_the_oracle_sees_an_injection_and_only_then(sandbox_dir: Path) -> None:
    # Without this, a broken oracle would make every test below pass.
    for shell in AVAILABLE:
        assert injection(Case(["echo '", None, "'"]), ["; touch PWNED; "], shell, sandbox_dir), shell
        assert not injection(Case(["echo ", None]), ["; touch PWNED; "], shell, sandbox_dir), shell


piece = st.one_of(st.none(), st.sampled_from(FRAGMENTS))
script = st.lists(st.tuples(piece, st.sampled_from(SEPARATORS)), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(parts=script, seed=st.integers(0, 2**32))
def test_accepted_scripts_do_not_run_hostile_values(
    sandbox_dir: Path, parts: list[tuple[str | None, str]], seed: int
) -> None:
    case = Case([x for p, sep in parts for x in (p, sep)])
    text = case.text()
    assume(case.nmarks() > 0 and harmless(text) and not misplaced(text))
    for values in variants(case.nmarks(), random.Random(seed)):
        for shell in AVAILABLE:
            assert not injection(case, values, shell, sandbox_dir), (shell, text, values)


word = st.tuples(st.sampled_from(WORD_PARTS), st.sampled_from(WORD_PARTS[:7]), st.sampled_from(BENIGN))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(word, min_size=1, max_size=4))
def test_benign_values_come_through_printf_intact(
    sandbox_dir: Path, words: list[tuple[tuple[str, str], tuple[str, str], str]]
) -> None:
    pieces: list[str | None] = ["printf '%s\\n'"]
    for (pre, _), (post, _), _ in words:
        pieces += [" ", pre, None, post]
    text = Case(pieces).text()
    assert misplaced(text) == []
    want = "".join(f"{lpre}{v}{lpost}\n" for (_, lpre), (_, lpost), v in words)
    for shell in AVAILABLE:
        assert run(shell, substitute(text, [v for *_, v in words]), sandbox_dir, capture=True) == want, shell
