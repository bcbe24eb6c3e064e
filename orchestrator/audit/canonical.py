"""RFC 8785 JSON Canonicalization Scheme (JCS) for the plain values the audit log stores.

Two parties that hash the same record must produce the same bytes, so everything that JSON leaves
open (key order, whitespace, escapes, number spelling) is fixed here exactly as the RFC fixes it.
"""

from __future__ import annotations

import math

# JCS numbers are IEEE 754 doubles; past 2**53 an int no longer survives a round trip through one.
MAX_EXACT_INT = 2**53

_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES: dict[int, str] = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({ord(char): escaped for char, escaped in _SHORT_ESCAPES.items()})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def canonical_json(value: object) -> bytes:
    """The JCS bytes of ``value`` (dict with str keys, list, str, bool, None, int, float)."""
    parts: list[str] = []
    _write(value, parts)
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"string holds a lone surrogate at {error.start}: not valid Unicode") from None


def _write(value: object, parts: list[str]) -> None:
    # bool before int: True is an int to Python but a literal to JSON.
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        parts.append(_integer(value))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, list):
        parts.append("[")
        for position, item in enumerate(value):
            if position:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    elif isinstance(value, dict):
        _write_object(value, parts)
    else:
        raise TypeError(
            f"JCS cannot encode {type(value).__name__}: use dict, list, str, bool, None, int, float"
        )


def _write_object(value: dict[object, object], parts: list[str]) -> None:
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"JCS object keys must be str, got {type(key).__name__}")
        keys.append(key)
    # JCS orders keys by UTF-16 code units; big-endian UTF-16 bytes compare in that same order
    # (code-point order differs once a key holds characters above U+FFFF). surrogatepass lets a
    # lone surrogate sort here: canonical_json rejects it when encoding to UTF-8.
    keys.sort(key=lambda key: key.encode("utf-16-be", "surrogatepass"))
    parts.append("{")
    for position, key in enumerate(keys):
        if position:
            parts.append(",")
        parts.append(_string(key))
        parts.append(":")
        _write(value[key], parts)
    parts.append("}")


def _string(value: str) -> str:
    return '"' + value.translate(_ESCAPES) + '"'


def _integer(value: int) -> str:
    if abs(value) > MAX_EXACT_INT:
        raise ValueError(f"integer {value} is beyond 2**53: JCS numbers cannot carry it exactly")
    # int.__repr__, not str(): an IntEnum member would otherwise print its name.
    return int.__repr__(value)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"JSON has no {value!r}: JCS numbers must be finite")
    if value == 0:
        return "0"  # -0.0 too: ECMAScript prints both zeros as 0
    # repr gives the shortest digit string that round-trips, which is what ECMAScript picks too;
    # only the layout of those digits differs.
    digits, point = _shortest_digits(abs(value))
    sign = "-" if value < 0 else ""
    return sign + _ecmascript_layout(digits, point)


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of ``value`` > 0 and where the decimal point goes.

    value == 0.DIGITS * 10**point, with no leading or trailing zero in DIGITS.
    """
    mantissa, _, exponent = float.__repr__(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point = len(whole) + int(exponent or "0") - (len(digits) - len(stripped))
    return stripped.rstrip("0"), point


def _ecmascript_layout(digits: str, point: int) -> str:
    # ECMAScript Number::toString: plain notation for 1e-6 <= |x| < 1e21, exponent form outside.
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    exponent_text = ("+" if exponent >= 0 else "-") + str(abs(exponent))
    if count == 1:
        return digits + "e" + exponent_text
    return digits[0] + "." + digits[1:] + "e" + exponent_text
