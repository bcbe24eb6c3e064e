"""YAML loading that remembers where each value came from, so errors can say FILE:LINE.

A schema error from pydantic carries a path such as ("pools", "web", "hosts", 0, "address"); ``LineMap``
turns it into the line of the deepest node that exists in the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml
from yaml.constructor import SafeConstructor

from orchestrator.errors import InputError

Loc = tuple[str | int, ...]
T = TypeVar("T", bound=pydantic.BaseModel)


class LineMap:
    def __init__(self, path: Path, lines: dict[Loc, int]) -> None:
        self.path = path
        self._lines = lines

    def line(self, loc: Sequence[str | int]) -> int:
        """Line (1-based) of the deepest existing node on ``loc``."""
        key: Loc = tuple(loc)
        while key and key not in self._lines:
            key = key[:-1]
        return self._lines.get(key, 1)

    def where(self, loc: Sequence[str | int]) -> str:
        return f"{self.path}:{self.line(loc)}"


def _scalar(node: yaml.Node) -> Any:
    # Built straight from the node, as safe_load would: a serialize/re-parse round trip fails on an
    # empty value (`hosts:` with nothing after it), which must be a schema error, not a traceback.
    return SafeConstructor().construct_object(node, deep=True)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    # A mapping value keeps its key's line: `web:` names the pool, not its first field below.
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:
                raise InputError(
                    f"?:{key_node.start_mark.line + 1}", f"duplicate key {key!r}", "each key once"
                )
            lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, (*loc, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(child, (*loc, i), lines) for i, child in enumerate(node.value)]
    return _scalar(node)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse ``path``; syntax errors become InputError with the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "file not found", "give the path of an existing YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read: {exc}", "a readable UTF-8 YAML file") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{path}:{line}", f"YAML syntax error: {exc.problem}", "valid YAML") from None
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"YAML syntax error: {exc}", "valid YAML") from None
    lines: dict[Loc, int] = {}
    if node is None:
        return None, LineMap(path, lines)
    try:
        data = _walk(node, (), lines)
    except InputError as exc:
        raise InputError(exc.where.replace("?", str(path), 1), exc.problem, exc.expected) from None
    return data, LineMap(path, lines)


def _describe(error: Any) -> tuple[str, str]:
    """(what is wrong, what was expected) for one pydantic error."""
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return f"missing required field {error['loc'][-1]!r}", "add it"
    if kind == "extra_forbidden":
        return f"unknown field {error['loc'][-1]!r}", "remove it or check its spelling"
    if kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
        what, _, expected = msg.partition("; ")
        return what, expected
    return f"invalid value {error.get('input')!r}" if "input" in error else msg, msg


def validate(model: type[T], data: Any, lines: LineMap, *, context: dict[str, Any] | None = None) -> T:
    """Validate ``data`` against ``model``; the first error becomes one InputError line."""
    if data is None:
        raise InputError(f"{lines.path}:1", "the file is empty", f"a {model.__name__.lower()} mapping")
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        what, expected = _describe(first)
        field = ".".join(str(p) for p in loc)
        if field and first["type"] not in ("missing", "extra_forbidden"):
            what = f"{field}: {what}"
        elif field and first["type"] == "missing":
            parent = ".".join(str(p) for p in loc[:-1])
            what = f"{parent + ': ' if parent else ''}{what}"
        raise InputError(lines.where(loc), what, expected) from None


def load(model: type[T], path: Path, *, context: dict[str, Any] | None = None) -> tuple[T, LineMap]:
    data, lines = load_yaml(path)
    return validate(model, data, lines, context=context), lines


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'150ms', '2s', '15m', '1h', or a number of seconds -> seconds (float, >= 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            f"{value!r} is not a duration; a number of seconds or e.g. '500ms', '30s', '15m', '1h'"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
