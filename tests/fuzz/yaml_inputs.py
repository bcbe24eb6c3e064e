"""YAML-ish inputs for fuzzing the loader, and the property every input must satisfy.

``check(data)`` loads ``data`` with ``load_yaml_bytes`` and validates the result as a Playbook and as
an Inventory. The property:

- only InputError escapes;
- its ``where`` is PATH or PATH:LINE with 1 <= LINE <= (newlines in the input) + 1;
- the message is one line, of bounded length, and names no pydantic internal (a union member's
  class, ``function-after``, ``[key]``, ``<class ...>``) unless the input itself contains that text;
- for "unknown field 'x'", "duplicate key 'x'" and "a.b.x: ..." errors, the line named holds ``x``
  (when ``x`` is written plainly in the file);
- no validator crashed (validate()'s "could not be checked" line), except KNOWN_BUGS;
- load + both validations take under TIME_LIMIT seconds of CPU (wall time on a shared machine is
  noise; the slowest wall time is reported), the best of three for an input slow once; sampled calls
  stay under a memory bound;
- where both parsers (libyaml, pure Python) load the input, they give the same data, and the same
  errors from validation.

Generators are hypothesis strategies: documents shaped like playbooks and inventories built from
their real field names, scalars YAML reads in surprising ways, tags, anchors, quoting and escapes,
flow and block styles, unicode, huge numbers, blow-ups towards the limits, and mutations of the real
files under playbooks/.
"""

from __future__ import annotations

import copy
import re
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from orchestrator.errors import InputError
from orchestrator.model import inventory as inventory_module
from orchestrator.model import playbook as playbook_module
from orchestrator.model import yamlfile
from orchestrator.model.inventory import Inventory
from orchestrator.model.playbook import Playbook
from orchestrator.model.yamlfile import MAX_BYTES, MAX_NODES, load_yaml_bytes, validate
from tests.unit.fakes import GOOD_INVENTORY, GOOD_PLAYBOOK

PATH = Path("/fuzz/input.yaml")
WHERE = re.compile(r"^/fuzz/input\.yaml(?::(\d+))?$")
TIME_LIMIT = 2.0
MEMORY_SAMPLE = 50  # every n-th input runs under tracemalloc (which slows it, so it is not timed)
MAX_MESSAGE = 1000
NEWLINE = b"\n"

# validate()'s line for an exception other than a ValidationError from a validator: a bug, unless known
KNOWN_BUGS = {
    # inventory.py: Inventory._resolve_paths calls .values() on `pools` / `hosts` whatever they hold;
    # a strict xfail row of tests/unit/test_yamlfile.py ("hosts as a list") tracks it.
    "resolve_paths .values()": re.compile(r"AttributeError: '\w+' object has no attribute 'values'"),
}
INTERNALS = (
    "function-",
    "[key]",
    "<class",
    "instance of",
    "Value error,",
    *sorted(
        name
        for module in (playbook_module, inventory_module)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and obj.__module__ == module.__name__
    ),
)  # class names: a union member's name in a location once reached the message

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = (
    *sorted(p.read_text() for p in (REPO / "playbooks").rglob("*.yaml")),
    GOOD_PLAYBOOK,
    GOOD_INVENTORY,
)


class PropertyFailed(AssertionError):
    """One input broke the property; ``kind`` groups failures of the same cause."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class Stats:
    inputs: int = 0
    bytes: int = 0
    refused_at_load: int = 0
    refused_by_schema: int = 0
    accepted: int = 0  # valid as one of the two models at least
    parsers_disagree: int = 0  # one parser refuses what the other loads: reported, not a failure
    known_bugs: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0  # CPU seconds in the loader and validate() for one input
    slowest_wall: float = 0.0  # the same in wall-clock seconds (this machine is shared)
    slow_once: int = 0  # inputs over TIME_LIMIT once, but not when measured again
    peak_memory: int = 0


STATS = Stats()


def signature(kind: str, detail: str) -> str:
    """Failures of one cause share a signature: the kind and the message without numbers or quotes."""
    return kind + ": " + re.sub(r"'[^']*'|\d+", "_", detail)[:80]


# ---- the property -----------------------------------------------------------------------------------


def _line_text(data: bytes, line: int) -> str:
    rows = data.split(b"\n")
    return rows[line - 1].decode("utf-8", "replace") if line <= len(rows) else ""


def _check_error(error: InputError, data: bytes) -> None:
    match = WHERE.match(error.where)
    if not match:
        raise PropertyFailed("bad where", f"{error.where!r} in {error}")
    text = str(error)
    if match.group(1):
        line = int(match.group(1))
        if not 1 <= line <= data.count(NEWLINE) + 1:
            raise PropertyFailed("line out of range", f"{line} of {data.count(NEWLINE) + 1}: {text}")
        _check_line_names_the_key(error, data, line)
    if "\n" in text or "\r" in text or len(text) > MAX_MESSAGE:
        raise PropertyFailed("not one short line", repr(text[:300]))
    message = f"{error.problem}; {error.expected}"
    for internal in INTERNALS:
        if internal in message and internal.encode() not in data:
            raise PropertyFailed("pydantic internal in the message", f"{internal!r} in {text}")
    if "could not be checked" in error.problem:
        for name, pattern in KNOWN_BUGS.items():
            if pattern.search(error.problem):
                STATS.known_bugs[name] = STATS.known_bugs.get(name, 0) + 1
                return
        raise PropertyFailed("a validator crashed", text)


_NAMED = re.compile(r"(?:unknown field|duplicate key) '([A-Za-z_][A-Za-z0-9_]*)'")
_FIELD = re.compile(r"^(?:[\w-]+\.)*([A-Za-z_][A-Za-z0-9_]*): ")


def _check_line_names_the_key(error: InputError, data: bytes, line: int) -> None:
    """The line of an error about key ``x`` must hold ``x``, where ``x`` is written plainly."""
    # "a.b: unknown field 'x'" is at x's line, not b's: only _NAMED can check it
    found = _NAMED.search(error.problem) or (
        None if "unknown field" in error.problem else _FIELD.match(error.problem)
    )
    if not found:
        return
    key = found.group(1)
    if key.encode() in data and key not in _line_text(data, line):
        raise PropertyFailed("wrong line", f"line {line} ({_line_text(data, line)!r}) lacks {key!r}: {error}")


def _outcome(data: bytes) -> tuple[str, Any, float]:
    """What loading and validating gives: ("load", where and problem) or ("ok", (data, one result per
    model)), and the CPU seconds spent in the loader and validate() (not in this harness's copies)."""
    start = time.process_time()
    try:
        loaded, lines = load_yaml_bytes(data, PATH)
    except InputError as error:
        spent = time.process_time() - start
        _check_error(error, data)
        return "load", f"{error.where} {error.problem}", spent
    spent = time.process_time() - start
    results = []
    for model, context in ((Playbook, None), (Inventory, {"base_dir": "/fuzz"})):
        copied = copy.deepcopy(loaded)  # Inventory's before-validator edits its input
        start = time.process_time()
        try:
            validate(model, copied, lines, context=context)
            results.append("valid")
        except InputError as error:
            spent += time.process_time() - start
            _check_error(error, data)
            results.append(f"{error.where} {error.problem}")
        else:
            spent += time.process_time() - start
    return "ok", (repr(loaded), results), spent


def check(data: bytes, *, compare_parsers: bool = True) -> None:
    """Raise PropertyFailed (or whatever escaped) if ``data`` breaks the property."""
    STATS.inputs += 1
    STATS.bytes += len(data)
    sampled = STATS.inputs % MEMORY_SAMPLE == 0
    if sampled:
        tracemalloc.start()
    wall = time.perf_counter()
    try:
        kind, result, spent = _outcome(data)
    finally:
        wall = time.perf_counter() - wall
        if sampled:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            STATS.peak_memory = max(STATS.peak_memory, peak)
            if peak > 64_000_000 + 40 * len(data):
                raise PropertyFailed("memory", f"{peak / 1e6:.0f} MB for {len(data)} bytes")
    if not sampled:  # tracemalloc slows everything down several times
        STATS.slowest_wall = max(STATS.slowest_wall, wall)
        if spent > TIME_LIMIT:  # once may be the machine (shared, and CPU time inflates under load)
            STATS.slow_once += 1
            spent = min(spent, *(_outcome(data)[2] for _ in range(2)))
            if spent > TIME_LIMIT:
                raise PropertyFailed("slow", f"{spent:.2f} s of CPU for {len(data)} bytes, three times")
        STATS.slowest = max(STATS.slowest, spent)
    if kind == "load":
        STATS.refused_at_load += 1
    elif "valid" in result[1]:
        STATS.accepted += 1
    else:
        STATS.refused_by_schema += 1
    if compare_parsers and yamlfile._FAST_LOADER is not None and len(data) < 20_000:
        _compare_with_the_python_parser(data, kind, result)


def _compare_with_the_python_parser(data: bytes, kind: str, result: Any) -> None:
    fast, yamlfile._FAST_LOADER = yamlfile._FAST_LOADER, None
    try:
        other_kind, other, _ = _outcome(data)
    finally:
        yamlfile._FAST_LOADER = fast
    if (kind, other_kind) == ("ok", "ok") and other != result:
        raise PropertyFailed("parsers give different results", f"libyaml {result!r}, python {other!r}")
    if kind != other_kind:
        STATS.parsers_disagree += 1


# ---- generators ------------------------------------------------------------------------------------

MODELS = tuple(
    obj
    for module in (playbook_module, inventory_module)
    for obj in vars(module).values()
    if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__
)
# every field name (and alias) of every model, so generated documents reach deep into the schemas
FIELDS = tuple(sorted({f.alias or name for model in MODELS for name, f in model.model_fields.items()}))
KEYS = (*FIELDS, "timout", "web", "web1", "<<", "? x")

SURPRISES = (
    "yes", "no", "on", "off", "NO", "Yes", "~", "null", "Null", "NULL", "true", "False", "<<", "=", "!",
    "&", "*", ".inf", "-.inf", "+.INF", ".nan", ".NaN", "0x_", "0b_", "0o17", "0777", "0644", "09",
    "1:30", "1:30.5", "190:20:30", "2026-12-01", "2026-13-45", "2026-02-30", "2026-12-01t10:00:00Z",
    "1e3", "1.0e+3", "1.0e+400", "-1.0e+400", "2026.10", "0.1", "+12", "-0", "1_000", "0x1F",
    "0xFFFFFFFFFFFFFFFF", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1d",
    "15m", "500ms", "-1s", "720h", "721h", "0s", "50%", "150%", "0%", "''", '""', "http://x/",
    "{{ vars.x }}", "{{ x", "{% if %}", "Mon 09:00-17:00", "Sat,Sun 01:00-05:00", "daily 02:00-04:00",
    "Mon-Fri 22:00-06:00", "UTC", "Europe/Paris", "Mars/Olympus", "qemu:///system", "/run/x.sock",
    "haproxy", "libvirt", "command", "none", "halt", "rollback_all", "continue", "keep",
    "delete_on_success", "postpone", "skip", "force", "fail", "RunStep", "HttpCheck", "0.5", "-1",
)  # fmt: skip
ESCAPES = (
    "\\x1b", "\\0", "\\r", "\\N", "\\_", "\\L", "\\P", "\\ud800", "\\udfff", "\\U0010FFFF", "\\U00110000",
    "\\u2028", "\\t", "\\n", "\\e", "\\a", "\\x1e", "\\x1f", "\\x7f", "\\x9b", "\\xff", '\\"', "\\\\",
    "\\u0000", "\\", "\\q", "\\x", "\\u12",
)  # fmt: skip
TAGS = (
    "!vault", "!!str", "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq", "!!set", "!!omap",
    "!!pairs", "!!binary", "!!timestamp", "!!merge", "!!value", "!!yaml", "!!python/object:os.system",
    "!!python/name:os.system", "!Ref", "!Sub", "!", "!<tag:yaml.org,2002:str>", "!<!>", "!<%0A>",
    "!<%FF>", "!e!x", "!!", "!<>",
)  # fmt: skip
INDICATORS = (*":-?[]{},&*!|>'\"%@`#\t ", "\n", "\r\n", "---", "...", "\ufeff", "\x00", "\u2028")

_texts = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=20)
_rare_texts = st.text(
    alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Co", "Zl", "Zp")), max_size=3
)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    n = draw(st.integers(min_value=-(10**40), max_value=10**40) | st.integers(-(2**64), 2**64))
    form = draw(st.sampled_from(["{}", "{}.5", "0x{:x}", "0b{:b}", "0{:o}", "{}e5", "{}.0e+{}", "1_{}"]))
    try:
        return form.format(abs(n) if "x" in form or "b" in form or "o" in form else n, abs(n) % 999)
    except ValueError:
        return str(n)


@st.composite
def double_quoted(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_texts | _texts | _texts | st.sampled_from(ESCAPES), max_size=4))
    return '"' + "".join(p.replace('"', '\\"') if not p.startswith("\\") else p for p in parts) + '"'


@st.composite
def plain(draw: st.DrawFn) -> str:
    roll = draw(st.integers(0, 99))
    if roll < 50:
        return draw(st.sampled_from(SURPRISES) | st.sampled_from(KEYS))
    if roll < 70:
        return draw(numbers())
    if roll < 97:
        return draw(_texts)
    return draw(_texts) + draw(_rare_texts) + draw(_texts)  # a raw control or format character


@st.composite
def scalars(draw: st.DrawFn) -> str:
    """Mostly plain and quoted text; now and then a tag, an anchor or an alias."""
    roll = draw(st.integers(0, 99))
    if roll < 65:
        return draw(plain())
    if roll < 80:
        return "'" + draw(plain()).replace("'", "''") + "'"
    if roll < 95:
        return draw(double_quoted())
    if roll < 98:
        return f"{draw(st.sampled_from(TAGS))} {draw(plain())}"
    if roll < 99:
        return f"&{draw(st.sampled_from('abx'))} {draw(plain())}"
    return f"*{draw(st.sampled_from('abx'))}"


@dataclass
class Node:
    """A YAML node before it is written: ``kind`` is scalar, map or seq; ``flow`` picks the style."""

    kind: str
    value: Any
    flow: bool = False
    prefix: str = ""  # a tag or an anchor


def _collections(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    keys = st.one_of(
        st.sampled_from(KEYS),
        st.sampled_from(KEYS),
        scalars(),
        st.builds(Node, st.just("seq"), st.lists(children, max_size=2), st.just(True)),
    )
    prefix = st.sampled_from(["", *[""] * 40, "!!map", "!!seq", "&a", "!vault", "!!set"])
    return st.one_of(
        st.builds(
            Node, st.just("map"), st.lists(st.tuples(keys, children), max_size=5), st.booleans(), prefix
        ),
        st.builds(Node, st.just("seq"), st.lists(children, max_size=5), st.booleans(), prefix),
    )


nodes = st.recursive(st.builds(Node, st.just("scalar"), scalars()), _collections, max_leaves=40)


def _key_text(key: Any) -> str:
    return "? " + render(key, 0, flow=True) if isinstance(key, Node) else str(key)


def render(node: Node, indent: int, *, flow: bool = False) -> str:
    """YAML text for ``node``: block style at ``indent`` spaces, or flow."""
    if node.kind == "scalar":
        return str(node.value)
    if flow or node.flow or not node.value:
        pre = f"{node.prefix} " if node.prefix else ""
        if node.kind == "seq":
            return pre + "[" + ", ".join(render(c, 0, flow=True) for c in node.value) + "]"
        return (
            pre + "{" + ", ".join(f"{_key_text(k)}: {render(v, 0, flow=True)}" for k, v in node.value) + "}"
        )
    return (f"{node.prefix}\n" if node.prefix else "") + _block(node, indent)


def _block(node: Node, indent: int) -> str:
    rows = []
    for item in node.value:
        child, head = (item, "-") if node.kind == "seq" else (item[1], f"{_key_text(item[0])}:")
        head = " " * indent + head
        if child.kind != "scalar" and child.value and not child.flow:  # a block below its key or dash
            rows.append(f"{head} {child.prefix}".rstrip() + "\n" + _block(child, indent + 2))
        else:
            rows.append(f"{head} {render(child, indent + 2)}")
    return "\n".join(rows)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A playbook- or inventory-shaped document: real top-level keys, generated values."""
    top = draw(
        st.sampled_from(
            [
                ["name", "pool", "update", "checks", "strategy", "drain", "window", "vars"],
                ["vars", "pools"],
            ]
        )
    )
    keys = draw(st.lists(st.sampled_from(top) | st.sampled_from(KEYS), min_size=1, max_size=8))
    root = Node("map", [(k, draw(nodes)) for k in keys], draw(st.booleans()))
    return render(root, 0) + "\n"


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """A real playbook or inventory with a few edits: values, keys, lines, characters."""
    lines = draw(st.sampled_from(EXAMPLES)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        edit = draw(st.integers(0, 9))
        if edit == 0 and ": " in line:  # a new value
            head = line[: line.index(": ") + 2]
            value = draw(nodes)
            lines[i] = head + render(value, 0, flow=True)
        elif edit == 1:
            del lines[i]
        elif edit == 2:
            lines.insert(i, line)
        elif edit == 3:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], line
        elif edit == 4:
            lines[i] = " " * draw(st.integers(0, 4)) + line.lstrip(" ") if draw(st.booleans()) else line[1:]
        elif edit == 5:  # a generated block at this line's indentation
            indent = len(line) - len(line.lstrip(" "))
            lines.insert(i, render(Node("map", [(draw(st.sampled_from(KEYS)), draw(nodes))]), indent))
        elif edit == 6 and line:  # a character becomes a YAML indicator
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + draw(st.sampled_from(INDICATORS)) + line[j + 1 :]
        elif edit == 7 and ":" in line:  # a key becomes another
            lines[i] = (
                " " * (len(line) - len(line.lstrip(" ")))
                + draw(st.sampled_from(KEYS))
                + line[line.index(":") :]
            )
        elif edit == 8 and ": " in line:  # a tag or an anchor before the value
            j = line.index(": ") + 2
            lines[i] = line[:j] + draw(st.sampled_from(TAGS) | st.just("&a")) + " " + line[j:]
        else:
            lines[i] = line + draw(st.sampled_from(["  # c", " #", "\t", " ", ":", " &a", " *a", " |", "\r"]))
    return "\n".join(lines)


@st.composite
def blow_ups(draw: st.DrawFn) -> bytes:
    """Inputs towards or past the limits: repetition, nesting, aliases, size."""
    shape = draw(st.integers(0, 6))
    if shape == 0:  # a snippet repeated up to past the size or node limit
        snippet = draw(
            st.sampled_from(["- 1\n", "k: v\n", "[1, 2], ", "{a: 1}, ", "x" * 100, "# c\n", "a: &a 1\n"])
        )
        text = snippet * draw(st.integers(1, (MAX_BYTES + 100) // len(snippet)))
        return (draw(st.sampled_from(["", "a: [", "update: [", "vars: {v: "])) + text).encode()
    if shape == 1:  # deep nesting in some style
        depth = draw(st.integers(50, 3000))
        style = draw(st.sampled_from(["[", "{a: ", "- ", "a:\n", "? ", "!!seq ["]))
        if style == "a:\n":
            return "".join(" " * i + "a:\n" for i in range(depth)).encode()
        return (style * depth).encode() + draw(st.sampled_from([b"", b"1", b"]" * depth, b"}" * depth]))
    if shape == 2:  # billion laughs, in a few spellings
        n = draw(st.integers(2, 12))
        lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, n)]
        return "\n".join(lines).encode()
    if shape == 3:  # a long scalar
        size = draw(st.integers(1, MAX_BYTES))
        body = draw(st.sampled_from(["x", "9", " ", "\\t", "'", "é"]))
        return (
            "a: " + draw(st.sampled_from(["", '"', "'", "|\n  "])) + body * (size // len(body.encode()))
        ).encode()
    if shape == 4:  # many documents
        return ("---\na: 1\n" * draw(st.integers(2, 1000))).encode()
    if shape == 5:  # a list at the node limit full of invalid items
        item = draw(st.sampled_from(["x", "{run: 1}", "{tcp: {port: x}}", "{upload: 1}", "null"]))
        count = draw(st.integers(1000, MAX_NODES + 1000)) // (item.count(":") + 1)
        items = ", ".join([item] * count)
        return f"name: x\npool: w\nupdate: [{items}]\nchecks: [{item}]\n".encode()
    return draw(st.binary(max_size=2000))


def _as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def byte_edits(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Bytes-level damage: a BOM, NUL, invalid UTF-8, truncation, CR line ends."""
    data = draw(base)
    edit = draw(st.integers(0, 6))
    if edit == 0:
        return b"\xef\xbb\xbf" + data
    if edit == 1 and data:
        i = draw(st.integers(0, len(data)))
        return (
            data[:i]
            + draw(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\r", b"\xe2\x80\xa8"]))
            + data[i:]
        )
    if edit == 2:
        return data[: draw(st.integers(0, len(data)))]
    if edit == 3:
        return data.replace(b"\n", b"\r\n")
    if edit == 4:
        return data.decode("utf-8", "replace").encode("utf-16")
    return data


texts = st.one_of(documents(), mutated_examples(), nodes.map(lambda n: render(n, 0) + "\n"))
inputs = st.one_of(
    texts.map(_as_bytes),
    byte_edits(texts.map(_as_bytes)),
    st.binary(max_size=300),
)
# one input in twenty is a blow-up: they take up to a second each, the others a few milliseconds
all_inputs = st.one_of(*[inputs] * 19, blow_ups())


def run_check(data: bytes, failures: list[tuple[str, bytes]]) -> None:
    """check(), keeping the failing input on ``failures`` before re-raising (hypothesis shrinks it)."""
    try:
        check(data)
    except BaseException as exc:
        kind = exc.kind if isinstance(exc, PropertyFailed) else f"{type(exc).__name__} escaped"
        failures.append((kind, data))
        raise
