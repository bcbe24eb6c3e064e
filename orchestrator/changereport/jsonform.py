"""The change report as JSON, and its check against the published schema
(``orchestrator/audit/change-report.schema.json``).

``jsonschema`` is not a dependency, so ``validate`` carries a small checker of its own. It knows only
the keywords that schema uses: ``$ref`` (local ``#/$defs/...``), ``type``, ``enum``, ``required``,
``properties``, ``additionalProperties``, ``items``, ``prefixItems``, ``minItems``, ``maxItems`` and
``minimum``; any other keyword in the schema is refused, so the schema cannot grow a rule that is
silently not checked.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "audit" / "change-report.schema.json"
SCHEMA_ID = "orchestrator-change-report/1"

# Keywords that only describe; everything else must be one the checker enforces.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
_CHECKED = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
    }
)
_SHOWN_PROBLEMS = 10


def render_json(doc: Mapping[str, Any]) -> str:
    """The document as JSON: sorted keys, indent 2, UTF-8 text as is, a final newline. NaN and infinities
    are refused (they are not JSON)."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


@functools.cache
def schema() -> Mapping[str, Any]:
    """The published schema, read once."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def validate(doc: Mapping[str, Any]) -> None:
    """Raise InputError naming every place (up to ten) where ``doc`` breaks the schema."""
    root = schema()
    problems = list(_check(doc, root, root, "$"))
    if problems:
        shown = problems[:_SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more else "")
        raise InputError(
            "change report document",
            f"{len(problems)} problem(s) against {SCHEMA_PATH.name}: {text}",
            f"a document of the shape {SCHEMA_ID} describes",
        )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    actual = _type_name(value)
    if name == "number":
        return actual in ("integer", "number") and math.isfinite(value)
    if name == "integer":
        # JSON Schema counts 3.0 as an integer, as jsonschema does.
        return actual == "integer" or (actual == "number" and math.isfinite(value) and value.is_integer())
    return actual == name


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    resolved: Mapping[str, Any] = node
    return resolved


def _check(value: Any, rule: Mapping[str, Any], root: Mapping[str, Any], where: str) -> Iterator[str]:
    unknown = set(rule) - _CHECKED - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {where} are not supported by this checker")
    if "$ref" in rule:
        yield from _check(value, _resolve(root, rule["$ref"]), root, where)
    if "enum" in rule and not any(_same(value, choice) for choice in rule["enum"]):
        yield f"{where}: {_short(value)} is not one of {', '.join(map(_short, rule['enum']))}"
        return
    if "type" in rule:
        names = [rule["type"]] if isinstance(rule["type"], str) else list(rule["type"])
        if not any(_is_type(value, name) for name in names):
            yield f"{where}: expected {' or '.join(names)}, got {_type_name(value)} {_short(value)}"
            return
    if "minimum" in rule and _is_type(value, "number") and value < rule["minimum"]:
        yield f"{where}: {value!r} is below the minimum {rule['minimum']!r}"
    if isinstance(value, Mapping):
        yield from _check_object(value, rule, root, where)
    elif isinstance(value, list | tuple):
        yield from _check_array(value, rule, root, where)


def _check_object(
    value: Mapping[str, Any], rule: Mapping[str, Any], root: Mapping[str, Any], where: str
) -> Iterator[str]:
    for name in rule.get("required", ()):
        if name not in value:
            yield f"{where}: required field {name!r} is missing"
    properties = rule.get("properties", {})
    extra = rule.get("additionalProperties", True)
    for name, item in value.items():
        here = f"{where}.{name}"
        if not isinstance(name, str):
            yield f"{where}: key {name!r} is not a string"
        elif name in properties:
            yield from _check(item, properties[name], root, here)
        elif extra is False:
            yield f"{where}: unexpected field {name!r}"
        elif isinstance(extra, Mapping):
            yield from _check(item, extra, root, here)


def _check_array(
    value: list[Any] | tuple[Any, ...], rule: Mapping[str, Any], root: Mapping[str, Any], where: str
) -> Iterator[str]:
    if "minItems" in rule and len(value) < rule["minItems"]:
        yield f"{where}: {len(value)} item(s), at least {rule['minItems']} expected"
    if "maxItems" in rule and len(value) > rule["maxItems"]:
        yield f"{where}: {len(value)} item(s), at most {rule['maxItems']} expected"
    prefix = rule.get("prefixItems", [])
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if index < len(prefix):
            yield from _check(item, prefix[index], root, here)
        elif rule.get("items") is False:
            yield f"{where}: {len(value)} items, at most {len(prefix)} expected"
            return
        elif isinstance(rule.get("items"), Mapping):
            yield from _check(item, rule["items"], root, here)


def _same(value: Any, choice: Any) -> bool:
    # True == 1 in Python, but not in JSON.
    return _type_name(value) == _type_name(choice) and value == choice


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
