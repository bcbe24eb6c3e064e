"""Differential testing of orchestrator.model.shellwords against real shells.

Scripts are drawn from a small grammar of shell fragments with values ("marks") in random places. For every
script that ``misplaced()`` accepts, each mark is replaced by ``quote_word(v)`` for hostile values ``v`` and
the result runs under bash, dash and busybox sh. The only command that can create or change the file
``PWNED`` is the ``touch PWNED`` inside a hostile value, so a touched ``PWNED`` is an injection that the
module let through.

The shells run as ``nobody`` (when we are root) in a directory that ``nobody`` cannot write, holding a
``PWNED`` it can write: a value can then only reach ``PWNED`` by running code, not by naming it as a
redirection target or by being written into a file that the script later runs (data flow through files is
not what the module models). A process limit guards against a fork bomb assembled by chance.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.model.shellwords import UNREAD, mark, misplaced
from orchestrator.model.templating import quote_word

SHELLS: dict[str, list[str]] = {
    "bash": ["/usr/bin/bash", "-c"],
    "dash": ["/usr/bin/dash", "-c"],
    "busybox": ["/usr/bin/busybox", "sh", "-c"],
}
AVAILABLE = {name: argv for name, argv in SHELLS.items() if shutil.which(argv[0])}

HOSTILE = [
    "; touch PWNED; ",
    " ; touch PWNED #",
    "|touch PWNED|",
    "\ntouch PWNED\n",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "$(touch PWNED)",
    "`touch PWNED`",
    "\\",
    "a\ntouch PWNED",
    "x[$(touch PWNED)]",
    "a[$(touch PWNED)]",
    "-c",
    "*",
    "$((1/0))",
    "\n#",
    "\ntouch PWNED\n#",
    "\nEOF\ntouch PWNED\n",
    "EOF\ntouch PWNED\nEOF",
    "touch PWNED",
    "touch PWNED #",
    "eval",
    "sh",
    "-ctouch PWNED",
    "-Stouch PWNED",
    "-v",
    "-eq",
    "a=b",
    "x[$(touch PWNED)]=1",
    "BASH_ENV=/dev/null",
    "do",
    "done",
    "esac",
    "fi",
    "}",
    ")",
    "'",
    '"',
    "$",
    "~",
    "a,b",
    "{a,b}",
    "touch${IFS}PWNED",
    "$(touch${IFS}PWNED)",
    "-e",
    "'\n touch PWNED \n'",
]
# Values that only inject together, given to consecutive marks.
COMBOS = [
    ["eval", "touch PWNED"],
    ["sh", "-c", "touch PWNED"],
    ["-c", "touch PWNED"],
    ["-v", "a[$(touch PWNED)]"],
    ["a[$(touch PWNED)]", "-eq"],
    ["-eq", "a[$(touch PWNED)]"],
    ["a=b", "eval", "touch PWNED"],
    ["a=b", "sh", "-c", "touch PWNED"],
    ["-i", "a[$(touch PWNED)]"],
    ["-e", "touch PWNED"],
    ["env", "sh", "-c", "touch PWNED"],
    ["-exec", "sh", "-c", "touch PWNED", ";"],
]
BENIGN = [
    "hello world",
    "it's",
    'a"b',
    "$HOME",
    "`id`",
    "\\",
    "*",
    "-n",
    "",
    "a\nb",
    "%s",
    "--",
    "ü",
    "t\tx",
    " x  y ",
]


def words(text: str) -> list[str]:
    return text.split()


# Fragments of harmless shell: nothing here writes a file or loops forever. Some repeat to weigh them.
FRAGMENTS = [
    *words("echo echo echo : true x a 1 -n -- /tmp = a= n= x=1 n x i _ . , /opt/ --opt="),
    "printf '%s\\n'",
    *words("if then fi else do done case in esac ;; a) *) { } ( ) [[ ]] -eq -v -gt == [ ] test !"),
    "for i in",
    *words("' ' \" \" ` $( $( ) ) ${ } $(( )) (( $' $\" $[ ] \\ $ # ~ {a, ,b} a[ ]=1 =("),
    *words('$x $n "$x" ${x} $1'),
    *words("; ; | | && || >/dev/null 2>&1 < &> <<< >&"),
    "<<EOF\n",
    "<<'EOF'\n",
    "<<-EOF\n",
    "\nEOF\n",
    "\n",
    "\n",
    "\n",
    *words("eval eval sh bash let declare local typeset read trap alias . source env command exec nice"),
    *words("xargs \\; {} + export readonly sed awk"),
    "sh -c",
    "sh -c",
    "bash -c",
    "dash -c",
    "bash -s",
    "declare -i",
    "printf -v",
    "env -i",
    "timeout 1",
    "find . -exec",
    "set --",
    "busybox sh",
    ">(",
    "<(",
    "tee",
    "${!x}",
    "read x <<<",
    "printf -v x %s",
    *words("PS4= BASH_ENV= ENV= IFS= mapfile coproc time $(<"),
    "set -x",
    "declare -n",
    "test -v",
    "bash -c :",
    "x=$1",
    "(( x ))",
    "$((x))",
    "[[ x -eq 1 ]]",
]
SEPARATORS = [" ", " ", " ", " ", "", "\n"]
NPROC = 64


@dataclass
class Case:
    """A script as a list of pieces; None is a mark."""

    pieces: list[str | None]

    def text(self) -> str:
        out, k = [], 0
        for p in self.pieces:
            if p is None:
                out.append(mark(k))
                k += 1
            else:
                out.append(p)
        return "".join(out)

    def nmarks(self) -> int:
        return sum(p is None for p in self.pieces)


def generate(rng: random.Random) -> Case:
    pieces: list[str | None] = []
    for j in range(rng.randint(2, 14)):
        if j:
            pieces.append(rng.choice(SEPARATORS))
        pieces.append(None if rng.random() < 0.3 else rng.choice(FRAGMENTS))
    if all(p is not None for p in pieces):
        pieces.insert(rng.randrange(len(pieces) + 1), None)
    return Case(pieces)


def harmless(script: str) -> bool:
    # "f() {" is the only way to a function and so to a fork bomb; `(` `)` side by side is never needed here.
    return "()" not in script.replace(" ", "").replace("\t", "").replace("\n", "")


def substitute(script_with_marks: str, values: list[str]) -> str:
    out = script_with_marks
    for k, v in enumerate(values):
        out = out.replace(mark(k), quote_word(v), 1)
    return out


def variants(n: int, rng: random.Random) -> list[list[str]]:
    """Value assignments to try for a script with ``n`` marks."""
    out = [[v] * n for v in rng.sample(HOSTILE, 3)]
    for _ in range(2):
        combo, off = rng.choice(COMBOS), rng.randrange(4)
        out.append([combo[(k + off) % len(combo)] for k in range(n)])
    out.append([rng.choice(HOSTILE) for _ in range(n)])
    return out


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (3, 3))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (NPROC, NPROC))


@contextmanager
def sandbox() -> Iterator[Path]:
    """A directory the shells run in: not writable by them, with a writable PWNED of a known age."""
    d = Path(tempfile.mkdtemp(prefix="shellwords-"))
    try:
        if os.geteuid() == 0:
            d.chmod(0o755)
        _reset(d)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _reset(d: Path) -> None:
    p = d / "PWNED"
    p.write_bytes(b"")
    if os.geteuid() == 0:
        os.chown(p, 65534, 65534)
    os.utime(p, (1_000_000, 1_000_000))


def pwned(d: Path) -> bool:
    """Did the last run touch, write, or remove PWNED? (Then put it back.)"""
    try:
        st = (d / "PWNED").stat()
        hit = st.st_mtime != 1_000_000 or st.st_size != 0
    except FileNotFoundError:
        hit = True
    if hit:
        _reset(d)
    return hit


def run(shell: str, script: str, cwd: Path, capture: bool = False) -> str:
    """Run ``script`` as ``SHELL -c script``; its stdout when ``capture``."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(
        [*AVAILABLE[shell], script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_limits,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return (out or b"").decode("utf-8", "replace")


@dataclass
class Failure:
    kind: str  # "injection", "crash", "slow", "benign"
    script: str  # with marks
    values: list[str]
    shell: str
    detail: str = ""  # for an injection: the script as generated, before shrinking


@dataclass
class Stats:
    generated: int = 0
    accepted: int = 0
    runs: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)


def judge(script: str, stats: Stats) -> bool:
    """Run misplaced(); record a crash or a slow answer. True when it accepts the script."""
    t0 = time.perf_counter()
    result = misplaced(script)
    took = time.perf_counter() - t0
    if any(m.where == UNREAD for m in result):
        stats.failures.append(Failure("crash", script, [], "", "misplaced() fell back to UNREAD"))
    if took > 0.05 + len(script) * 2e-5:
        stats.failures.append(Failure("slow", script, [], "", f"{took:.3f}s"))
    return not result


def injection(case: Case, values: list[str], shell: str, d: Path) -> bool:
    run(shell, substitute(case.text(), values), d)
    return pwned(d)


def shrink(case: Case, values: list[str], still: Callable[[Case, list[str]], bool]) -> tuple[Case, list[str]]:
    """Drop pieces one by one while the failure stays (greedy, so a local minimum)."""
    pieces, vals = list(case.pieces), list(values)
    changed = True
    while changed:
        changed = False
        for k in range(len(pieces) - 1, -1, -1):
            before = sum(p is None for p in pieces[:k])
            cand = pieces[:k] + pieces[k + 1 :]
            cvals = vals[:before] + vals[before + 1 :] if pieces[k] is None else vals
            c = Case(cand)
            if cand and c.nmarks() and not misplaced(c.text()) and still(c, cvals):
                pieces, vals, changed = cand, cvals, True
    return Case(pieces), vals


def check_injections(rng: random.Random, stats: Stats, d: Path) -> None:
    case = generate(rng)
    script = case.text()
    stats.generated += 1
    if not harmless(script) or not judge(script, stats):
        return
    stats.accepted += 1
    for values in variants(case.nmarks(), rng):
        for shell in AVAILABLE:
            stats.runs[shell] += 1
            if injection(case, values, shell, d):
                small, svals = shrink(case, values, lambda c, v, sh=shell: injection(c, v, sh, d))
                stats.failures.append(
                    Failure("injection", small.text(), svals, shell, f"{script!r} {values!r}")
                )
                return


# Literal text around a value in a printf argument, as written and as printed.
WORD_PARTS = [
    ("", ""),
    ("a", "a"),
    ("--opt=", "--opt="),
    ("/opt/", "/opt/"),
    ("x.", "x."),
    ("'q'", "q"),
    ('"d"', "d"),
    ("a'b'", "ab"),
    ("\\x", "x"),
    ("k=", "k="),
]


def check_benign(rng: random.Random, stats: Stats, d: Path) -> None:
    """printf '%s\\n' with values inside words: accepted, and each value comes out intact."""
    words: list[tuple[str, str]] = []
    pieces: list[str | None] = ["printf '%s\\n'"]
    for _ in range(rng.randint(1, 4)):
        (pre, lpre), (post, lpost) = rng.choice(WORD_PARTS), rng.choice(WORD_PARTS[:7])
        pieces += [" ", pre, None, post]
        words.append((lpre, lpost))
    case = Case(pieces)
    stats.generated += 1
    if not judge(case.text(), stats):
        stats.failures.append(Failure("benign", case.text(), [], "", "refused"))
        return
    stats.accepted += 1
    values = [rng.choice(BENIGN) for _ in words]
    want = "".join(f"{a}{v}{b}\n" for (a, b), v in zip(words, values, strict=True))
    for shell in AVAILABLE:
        stats.runs[shell] += 1
        got = run(shell, substitute(case.text(), values), d, capture=True)
        if got != want:
            stats.failures.append(
                Failure("benign", case.text(), values, shell, f"got {got!r}, want {want!r}")
            )


def fuzz(seed: int, until: Callable[[Stats], bool]) -> Stats:
    rng, stats = random.Random(seed), Stats()
    with sandbox() as d:
        while not until(stats):
            if rng.random() < 0.1:
                check_benign(rng, stats, d)
            else:
                check_injections(rng, stats, d)
    return stats
