"""YAML loading that remembers where each value came from, so errors can say FILE:LINE.

A schema error from pydantic carries a path such as ("pools", "web", "hosts", 0, "address"); ``LineMap``
turns it into the line of the deepest node that exists in the file.

The files come from users, so loading is bounded and strict before any Python object is built: at most
``MAX_BYTES`` are read (from a file, a pipe or a device alike), the text must be UTF-8 without control
characters, and the parser's events are walked in one loop (no recursion) that refuses anchors and
aliases, keys that are not text or integers, a second document, more than ``MAX_DEPTH`` levels of
nesting and more than ``MAX_NODES`` values. What a scalar means (and which tags pass) is in
``yamlscalars``. Every refusal is one ``InputError`` naming the line.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from orchestrator.errors import InputError
from orchestrator.model import yamlscalars as scalars
from orchestrator.model.yamlscalars import INT_MAX, INT_MIN, YamlFloat, one_line, short

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_NODES",
    "LineMap",
    "YamlFloat",
    "load",
    "load_yaml",
    "load_yaml_bytes",
    "parse_duration",
    "validate",
]

Loc = tuple[str | int, ...]
T = TypeVar("T", bound=pydantic.BaseModel)

MAX_BYTES = 5_000_000  # a real playbook or inventory is a few kB
MAX_DEPTH = 64  # levels of nesting
MAX_NODES = 40_000  # scalars, mappings and lists, keys included: 2,500 hosts of 16 values each
MAX_DURATION = 30 * 24 * 3600.0  # seconds

# libyaml's parser gives the same events ~20x faster: a file at the size limit loads in well under 1 s.
# Without it (PyYAML built without libyaml) the pure-Python parser does, slower but with the same rules.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


class _Node:
    """The line of one mapping or list and of its children by key or index. A scalar child is only its
    line (an int): one object per collection, not per value, and memory by node count, not by node
    count times depth as flat location tuples would take."""

    __slots__ = ("children", "line")

    def __init__(self, line: int | None) -> None:
        self.line = line
        self.children: dict[str | int, _Node | int] = {}


class LineMap:
    def __init__(self, path: Path, lines: Mapping[Loc, int] | None = None) -> None:
        self.path = path
        self._root = _Node(None)
        for loc, line in sorted((lines or {}).items(), key=lambda item: len(item[0])):
            node = self._root
            for part in loc[:-1]:
                child = node.children.get(part)
                if not isinstance(child, _Node):
                    child = node.children[part] = _Node(child)
                node = child
            if loc:
                node.children[loc[-1]] = _Node(line)
            else:
                node.line = line

    @classmethod
    def _of(cls, path: Path, root: _Node) -> LineMap:
        lines = cls(path)
        lines._root = root
        return lines

    def line(self, loc: Sequence[str | int]) -> int:
        """Line (1-based) of the deepest existing node on ``loc``."""
        node, line = self._root, self._root.line or 1
        for part in loc:
            child = node.children.get(part)
            if child is None:
                break
            if isinstance(child, int):
                return child
            node, line = child, child.line or line
        return line

    def where(self, loc: Sequence[str | int]) -> str:
        return f"{self.path}:{self.line(loc)}"


# ---- reading ------------------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        # Never read_text(): a FIFO, /dev/zero or a process substitution has no end we can trust.
        with open(path, "rb") as stream:
            return stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError(str(path), "file not found", "give the path of an existing YAML file") from None
    except IsADirectoryError:
        raise InputError(str(path), "this is a directory", "give the path of a YAML file in it") from None
    except PermissionError:
        raise InputError(str(path), "permission denied", "a YAML file you may read") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}", "a readable YAML file") from None


def _line_at(data: bytes | str, index: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, index) + 1
    return data.count("\n", 0, index) + 1


# YAML's printable set minus the line breaks that editors and `grep -n` do not count (CR alone, NEL,
# U+2028, U+2029), so that YAML's line numbers are the editor's, and minus a byte order mark past the
# start, which is invisible and which libyaml and PyYAML read differently (a key, or nothing).
_UNPRINTABLE = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|\r(?!\n)"
)


def _text(path: Path, data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise InputError(
            str(path),
            f"the file is larger than {MAX_BYTES // 1_000_000} MB",
            "a playbook or inventory of a few kB",
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(f"{path}:1", "the file is UTF-16 (it starts with a UTF-16 byte order mark)", "UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(
            f"{path}:{_line_at(data, nul)}", "a NUL byte: this is not a text file", "a YAML text file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4]
        raise InputError(
            f"{path}:{_line_at(data, exc.start)}", f"bytes that are not UTF-8 ({bad!r})", "a UTF-8 text file"
        ) from None
    found = _UNPRINTABLE.search(text)
    if found:
        char = found.group()[0]
        where = f"{path}:{_line_at(text, found.start())}"
        if char == "\r":
            raise InputError(
                where, "a carriage return (CR) without a newline after it", "LF or CRLF line ends"
            )
        if char == "\ufeff":
            raise InputError(
                where, "a byte order mark (U+FEFF) inside the file, where it is invisible", "remove it"
            )
        if char in "\x85\u2028\u2029":
            raise InputError(
                where,
                f"character {scalars.codepoint(char)}, which YAML reads as a line break",
                "a plain newline",
            )
        if unicodedata.category(char) == "Cc":
            raise InputError(where, f"control character {scalars.codepoint(char)} in the file", "remove it")
        raise InputError(
            where, f"character {scalars.codepoint(char)}, which YAML does not allow", "remove it"
        )
    return text


# ---- events to data -----------------------------------------------------------------------------------


class _Frame:
    """An open mapping or list: its container, its line node, and (mapping) the key awaiting a value."""

    __slots__ = ("container", "key", "key_line", "lines")

    def __init__(self, container: dict[Any, Any] | list[Any], lines: _Node) -> None:
        self.container = container
        self.lines = lines
        self.key: str | int | None = None
        self.key_line = 0


class _Builder:
    """Data and its line tree from the parser's events, one event at a time: no recursion, and every
    bound is checked before the node it concerns is built. This runs up to MAX_NODES times per file:
    the commonest events are tested first, and a scalar costs its value and one line number."""

    def __init__(self) -> None:
        self.root: Any = None
        self.lines = _Node(1)
        self.stack: list[_Frame] = []
        self.documents = self.nodes = 0

    def add(self, event: yaml.Event, line: int) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._count(event)
            top = self.stack[-1] if self.stack else None
            if top is not None and isinstance(top.container, dict) and top.key is None:
                self._key(top, event, line)
            else:
                try:
                    value = scalars.scalar(event.value, event.tag, event.implicit)
                except scalars.Refused as refused:
                    # name the key in the message: a line can hold several values (flow style)
                    if top is not None and isinstance(top.container, dict) and top.key is not None:
                        refused.problem = f"{short(top.key)}: {refused.problem}"
                    raise
                self._attach(top, value, line)
        elif isinstance(event, yaml.CollectionEndEvent):
            self.stack.pop()
        elif isinstance(event, yaml.CollectionStartEvent):
            self._count(event)
            self._open(event, line)
        elif isinstance(event, yaml.AliasEvent):
            self._count(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise scalars.Refused("a second YAML document", "one YAML document per file")

    def _count(self, event: yaml.NodeEvent) -> None:
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise scalars.Refused("YAML anchors and aliases are not supported", "write the value out in full")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise scalars.Refused(
                f"more than {MAX_NODES} values in the file", "a playbook or inventory of a few kB"
            )

    def _key(self, top: _Frame, event: yaml.ScalarEvent, line: int) -> None:
        key = scalars.key(event.value, event.tag, event.implicit)
        if key in top.container:
            raise scalars.Refused(f"duplicate key {short(key)}", "each key once")
        top.key, top.key_line = key, line

    def _open(self, event: yaml.CollectionStartEvent, line: int) -> None:
        mapping = isinstance(event, yaml.MappingStartEvent)
        kind = "mapping" if mapping else "list"
        if event.tag is not None and event.tag != scalars.TAG + ("map" if mapping else "seq"):
            raise scalars.refuse_tag(event.tag, kind)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.container, dict) and top.key is None:
            raise scalars.Refused(f"a {kind} as a key", "keys are names: `name: value`")
        if len(self.stack) >= MAX_DEPTH:
            raise scalars.Refused(f"more than {MAX_DEPTH} levels of nesting", "a flatter structure")
        value: dict[Any, Any] | list[Any] = {} if mapping else []
        # in a mapping, a value keeps its key's line: `web:` names the pool, not its first field
        node = self.lines if top is None else _Node(top.key_line if isinstance(top.container, dict) else line)
        self._attach(top, value, line, node)
        self.stack.append(_Frame(value, node))

    def _attach(self, top: _Frame | None, value: Any, line: int, node: _Node | None = None) -> None:
        if top is None:
            self.root, self.lines.line = value, line
        elif isinstance(top.container, dict):
            assert top.key is not None
            top.container[top.key] = value
            top.lines.children[top.key] = node or top.key_line
            top.key = None
        else:
            top.lines.children[len(top.container)] = node or line
            top.container.append(value)


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> str:
    problem = exc.problem or exc.context or "invalid YAML"
    mark = exc.problem_mark
    if problem == "found character that cannot start any token" and mark is not None:  # libyaml's words
        rows = text.split("\n", mark.line + 1)
        row = rows[mark.line] if mark.line < len(rows) else ""
        if mark.column < len(row):
            problem = f"found character {row[mark.column]!r} that cannot start any token"
    return one_line(problem)


def load_yaml_bytes(data: bytes, path: Path) -> tuple[Any, LineMap]:
    """Parse ``data`` read from ``path`` (named in errors); see the module's docstring for the rules."""
    text = _text(path, data)
    builder, parser = _Builder(), (_FAST_LOADER or yaml.SafeLoader)(text)
    line = 1
    try:
        while not isinstance(event := parser.get_event(), yaml.StreamEndEvent):
            line = event.start_mark.line + 1
            builder.add(event, line)
    except scalars.Refused as refused:
        raise InputError(f"{path}:{line}", refused.problem, refused.expected) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, _line_at(text, len(text))) if mark else 1
        raise InputError(
            f"{path}:{line}", f"YAML syntax error: {_syntax_problem(exc, text)}", "valid YAML"
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(str(path), f"YAML syntax error: {one_line(first)}", "valid YAML") from None
    except ValueError as exc:  # the pure-Python scanner calls chr() on "\U00110000" unchecked
        if "chr()" not in str(exc):
            raise
        line = parser.get_mark().line + 1 if hasattr(parser, "get_mark") else line
        problem = "found invalid Unicode character escape code (beyond U+10FFFF)"
        raise InputError(f"{path}:{line}", f"YAML syntax error: {problem}", "valid YAML") from None
    finally:
        parser.dispose()
    return builder.root, LineMap._of(path, builder.lines)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Read and parse ``path``; every problem becomes one InputError with the file and, where known, the
    line."""
    return load_yaml_bytes(_read(path), path)


# ---- schema errors ------------------------------------------------------------------------------------


def _in_file(loc: Sequence[Any], data: Any) -> tuple[list[str | int], Any]:
    """The parts of a pydantic location that are keys or indexes of ``data`` along the way, and the
    value found there as written (for `[key]`, the key).

    Pydantic adds parts that are not in the file: a union member's class name (`update.1.RunStep.timeout`),
    a tagged union's tag, `[key]`, `function-after[...]`; each is skipped, so the line found is the
    field's own and the message names the field as written.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and isinstance(part, str | int) and part in node
        if in_dict or (isinstance(node, list) and type(part) is int and 0 <= part < len(node)):
            node = node[part]
            path.append(part)
        elif part == "[key]" and path:
            node = path[-1]
    return path, node


def _field(path: Sequence[str | int]) -> str:
    return ".".join(
        str(p) if isinstance(p, int) or re.fullmatch(r"[\w-]{1,64}", p, re.ASCII) else short(p, 40)
        for p in path
    )


_PYDANTIC_CLASSES = re.compile(r" (?:for|of) <class '[\w.]+'>| or instance of \w+")


def _describe(error: Any, name: str | int, value: Any) -> tuple[str, str]:
    """(what is wrong, what was expected) for one pydantic error about ``value``; ``name`` is the field
    as written."""
    kind = error["type"]
    msg = _PYDANTIC_CLASSES.sub("", str(error["msg"]))
    if kind == "missing":
        return f"missing required field {name!r}", "add it"
    if kind == "extra_forbidden":
        return f"unknown field {name!r}", "remove it or check its spelling"
    if kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
        what, _, expected = msg.partition("; ")
        return what, expected
    if kind in ("model_type", "model_attributes_type", "dataclass_type"):
        msg = "Input should be a mapping (key: value)"
    return f"invalid value {short(value)}", msg


def _kind(data: Any) -> str:
    if isinstance(data, list):
        return "a list"
    return "text" if isinstance(data, str) else f"a single value ({short(data)})"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A document near MAX_NODES whose every item fails a validator makes as many exceptions and error
    records: with the cyclic collector running, their allocations set off collections that walk the
    whole document again and again (half of 1.4 s, measured). Reference counting frees all meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first_error(model: type[T], data: Any, context: dict[str, Any] | None) -> tuple[T | None, Any]:
    """The model, or pydantic's first error, without its input, URL or context: a list of 100,000 bad
    items has as many errors, and converting them all with their inputs took most of a second."""
    with _collector_paused():
        try:
            return model.model_validate(data, context=context), None
        except pydantic.ValidationError as exc:
            return None, exc.errors(include_url=False, include_context=False, include_input=False)[0]


def validate(model: type[T], data: Any, lines: LineMap, *, context: dict[str, Any] | None = None) -> T:
    """Validate ``data`` against ``model``; the first error becomes one InputError line."""
    noun = model.__name__.lower()
    if data is None:
        raise InputError(f"{lines.path}:1", "the file is empty", f"a {noun} mapping")
    if not isinstance(data, dict):
        raise InputError(lines.where(()), f"the file holds {_kind(data)}, not a mapping", f"a {noun} mapping")
    try:
        result, first = _first_error(model, data, context)
    except InputError:
        raise
    except Exception as exc:  # a validator's own bug: still one line, never a traceback
        raise InputError(
            lines.where(()),
            one_line(f"the {noun} could not be checked: {type(exc).__name__}: {exc}"),
            "this is a bug in the orchestrator; please report it with the file",
        ) from None
    if result is not None:
        return result
    loc = list(first["loc"])
    if first["type"] in ("missing", "extra_forbidden") and loc:
        # the field itself (absent, or unknown), under its parent as written in the file
        parent, value = _in_file(loc[:-1], data)
        path, name = [*parent, loc[-1]], loc[-1]
    else:
        path, value = _in_file(loc, data)  # the value as written, not as a before-validator left it
        parent, name = path, path[-1] if path else ""
    what, expected = _describe(first, name, value)
    if parent:
        what = f"{_field(parent)}: {what}"
    raise InputError(lines.where(path), one_line(what), one_line(expected))


def load(model: type[T], path: Path, *, context: dict[str, Any] | None = None) -> tuple[T, LineMap]:
    data, lines = load_yaml(path)
    return validate(model, data, lines, context=context), lines


# ---- durations ----------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NOT_A_DURATION = "a number of seconds or e.g. '500ms', '30s', '15m', '1h'"


def parse_duration(value: Any) -> float:
    """'150ms', '2s', '15m', '1h', or a number of seconds -> seconds (float, 0 to MAX_DURATION)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 40:
        match = _DURATION.fullmatch(value.strip())
        if match:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{short(value)} is not a duration; {_NOT_A_DURATION}")
    if seconds > MAX_DURATION:
        raise ValueError(f"{short(value)} is longer than 30 days; a duration up to 30 days ('720h')")
    return seconds
