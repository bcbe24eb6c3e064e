"""What one YAML scalar means, as YAML 1.1 and PyYAML's safe_load read it, but bounded and strict.

``yes`` is true and ``0644`` is octal, as before; the differences are what a hostile or careless file
could abuse: an integer must fit in 64 bits (checked before a long digit string reaches ``int()``), a
float that overflows is refused, a timestamp stays the text written (``2026-12-01`` is a string, and
``2026-13-45`` is no longer a crash), and a float keeps its text (``YamlFloat``). Tags: only the
standard ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null`` (where they agree with the value)
and ``!!map`` / ``!!seq`` (on a mapping / list); any other is refused. Controls in text are refused.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

INT_MIN, INT_MAX = -(2**63), 2**63 - 1

TAG = "tag:yaml.org,2002:"
SCALAR_TAGS = frozenset(TAG + kind for kind in ("str", "int", "float", "bool", "null"))
COLLECTION_TAGS = frozenset((TAG + "map", TAG + "seq"))
VAULT_HINT = (
    "keep secrets out of the file with the orchestrator's own secrets: `secrets: {NAME: {env: VAR}}` "
    "or `{file: PATH}`, used as `{{ secrets.NAME }}`"
)
_KINDS = {"int": "an integer", "float": "a number", "bool": "a boolean (true/false)", "null": "null (~)"}

# In a key or value (from a double-quoted escape such as "\x1b"): C0 and C1 controls but tab and
# newline, DEL, and lone surrogates ("\ud800"), which cannot even be encoded back to UTF-8.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_RESOLVER: Any = Resolver()  # resolve() only reads the class's implicit resolvers: safe to share


class Refused(Exception):
    """A rule broken by the node being read; the loader turns it into an InputError at its line."""

    def __init__(self, problem: str, expected: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.expected = expected


class YamlFloat(float):
    """A float from the file that prints as written: ``str(YamlFloat("2026.10"))`` is ``2026.10``.

    It compares, hashes and computes as the float it is (arithmetic gives plain floats), and pydantic
    keeps it as is in ``Any`` fields, so ``{{ vars.version }}`` renders what the author wrote.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str, value: float | None = None) -> YamlFloat:
        """``value`` defaults to what YAML reads in ``text`` (``.inf``, ``1_000.5``, ``1:30.5``)."""
        self = super().__new__(cls, _float_value(text) if value is None else value)
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __reduce__(self) -> tuple[type[YamlFloat], tuple[str, float]]:
        return YamlFloat, (self.text, float(self))

    def __copy__(self) -> YamlFloat:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> YamlFloat:
        return self


def one_line(text: str, limit: int = 400) -> str:
    """For a message printed as one terminal line: escape line breaks and controls, cap the length."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit``: a 5 MB value never ends up in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def codepoint(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def tag_name(tag: str) -> str:
    return one_line("!!" + tag.removeprefix(TAG) if tag.startswith(TAG) else tag, 50)


def refuse_tag(tag: str, kind: str) -> Refused:
    """The error for ``tag`` on a node of ``kind`` ('mapping', 'list' or 'value')."""
    if tag in SCALAR_TAGS | COLLECTION_TAGS:
        return Refused(f"the tag {tag_name(tag)} on a {kind}", "drop the tag")
    if tag == "!vault":
        return Refused("tags are not supported (`!vault` is an Ansible Vault secret)", VAULT_HINT)
    return Refused(
        f"tags are not supported (found {tag_name(tag)})", "remove it; quote the value if it must stay text"
    )


def check_text(text: str, what: str) -> None:
    found = _CONTROL.search(text)
    if found:
        raise Refused(f"control character {codepoint(found.group())} in {what}", "remove it")


def _not_a_number(text: str) -> Refused:
    return Refused(f"{short(text)} looks like a number but is not one", "quote it if it is text")


def _out_of_range(text: str) -> Refused:
    return Refused(f"the number {short(text)} is out of range", f"an integer from {INT_MIN} to {INT_MAX}")


def _int(text: str) -> int:
    """0b, 0x, 0 for octal, 1:30 for base 60; out of 64 bits is refused before int() sees a long string
    (slow, and refused by Python past 4300 digits)."""
    value = text.replace("_", "")
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    try:
        if ":" in value:
            if len(value) > 64:
                raise _out_of_range(text)
            number = 0
            for part in value.split(":"):
                number = number * 60 + int(part)
        else:
            base = {"0b": 2, "0x": 16}.get(value[:2], 8 if value.startswith("0") else 10)
            digits = value[2:] if base in (2, 16) else value
            if len(digits.lstrip("0")) > 64:
                raise _out_of_range(text)
            number = int(digits, base)
    except ValueError:  # "0x_" matches YAML's pattern for a number, but has no digits
        raise _not_a_number(text) from None
    if not INT_MIN <= sign * number <= INT_MAX:
        raise _out_of_range(text)
    return sign * number


def _float_value(text: str) -> float:
    value = text.replace("_", "").lower()
    if value.lstrip("+-") in (".inf", ".nan"):
        return float(value.replace(".", ""))
    number = 0.0
    try:
        for part in value.lstrip("+-").split(":"):  # base 60, as in YAML 1.1: 1:30.5 is 90.5
            number = number * 60 + float(part)
    except ValueError:
        raise _not_a_number(text) from None
    if math.isinf(number):
        raise Refused(f"the number {short(text)} is too large", "a number that fits a 64-bit float")
    return -number if value.startswith("-") else number


def scalar(text: str, tag: str | None, implicit: tuple[bool, bool], what: str = "a value") -> Any:
    """The value of one scalar as written (``tag`` is the explicit tag, if any); ``what`` it is, for
    messages."""
    if len(text) <= 32:  # the same short words recur by the thousand in a big file; values are immutable
        return _short_scalar(text, tag, implicit, what)
    return _scalar(text, tag, implicit, what)


def _scalar(text: str, tag: str | None, implicit: tuple[bool, bool], what: str) -> Any:
    if tag is None:
        tag = _RESOLVER.resolve(ScalarNode, text, implicit)
    elif tag not in SCALAR_TAGS:
        raise refuse_tag(tag, what.removeprefix("a "))
    elif tag != TAG + "str":  # a standard tag is accepted where it agrees with the value
        found = _RESOLVER.resolve(ScalarNode, text, (True, False))
        if found != tag and (tag, found) != (TAG + "float", TAG + "int"):
            kind = _KINDS[tag.removeprefix(TAG)]
            raise Refused(
                f"{tag_name(tag)} on {short(text)}, which is not {kind}", "drop the tag or fix the value"
            )
    if tag == TAG + "null":
        return None
    if tag == TAG + "bool":
        return SafeConstructor.bool_values[text.lower()]
    if tag == TAG + "int":
        return _int(text)
    if tag == TAG + "float":
        return YamlFloat(text)
    if tag == TAG + "merge":
        raise Refused(
            "merge keys (<<) are not supported", "write the keys out in full; quote '<<' if it is text"
        )
    # str; also timestamp (the text as written), value (`=`) and yaml (`!`, `&`, `*`), which PyYAML's
    # safe constructor could not even build
    check_text(text, what)
    return text


def key(text: str, tag: str | None, implicit: tuple[bool, bool]) -> str | int:
    """A mapping key: text or an integer, never null, a boolean (`no:`) or a float."""
    value = scalar(text, tag, implicit, "a key")
    if value is None:
        raise Refused("a key that YAML reads as null (empty, ~ or null)", "give the key a name, or quote it")
    if isinstance(value, bool | float):
        kind = "a boolean" if isinstance(value, bool) else "a number with a fraction"
        raise Refused(
            f"the key {short(text)} is read by YAML as {kind}", f"quote it: '{one_line(text, 40)}':"
        )
    assert isinstance(value, str | int)
    return value


_short_scalar = functools.lru_cache(maxsize=4096)(_scalar)
