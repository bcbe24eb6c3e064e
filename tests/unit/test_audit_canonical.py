"""RFC 8785 (JCS) canonical JSON: the RFC's own examples, then properties.

Number samples: RFC 8785 Appendix B (IEEE 754 bit patterns and their ECMAScript spelling).
"""

from __future__ import annotations

import enum
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.audit.canonical import MAX_EXACT_INT, canonical_json

APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    assert canonical_json(double(bits)) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_non_finite_numbers_are_refused(bits: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        canonical_json(double(bits))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.0, "2"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e20, "100000000000000000000"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (123.456, "123.456"),
        (0, "0"),
        (-17, "-17"),
        (MAX_EXACT_INT, "9007199254740992"),
        (-MAX_EXACT_INT, "-9007199254740992"),
    ],
)
def test_number_layout(value: float, expected: str) -> None:
    assert canonical_json(value) == expected.encode()


def test_rfc_section_3_2_2_example() -> None:
    # The RFC's input, written the way JSON.parse would hand it over.
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


def test_rfc_section_3_2_3_sorting_example() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [key for key in json.loads(canonical_json(value))]
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 in UTF-16.
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_rfc_section_3_2_4_utf8_bytes() -> None:
    # The RFC's check: {"\u20ac":"\u00e9"} hashes over the raw UTF-8, nothing \u escaped.
    assert canonical_json({"\u20ac": "\u00e9"}) == b'{"\xe2\x82\xac":"\xc3\xa9"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f", '"\x7f"'),
        ("\x1a", '"\\u001a"'),
        ("/<>&'", '"/<>&\'"'),
        ('"\\', '"\\"\\\\"'),
        ("\u2028\ufeff", '"\u2028\ufeff"'),
    ],
)
def test_string_escapes(text: str, expected: str) -> None:
    assert canonical_json(text) == expected.encode("utf-8")


def test_no_whitespace_and_nested_structure() -> None:
    value = {"b": [1, {"z": None, "a": []}], "a": {}}
    assert canonical_json(value) == b'{"a":{},"b":[1,{"a":[],"z":null}]}'


def test_int_enum_prints_as_its_value() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    assert canonical_json([Level.HIGH, True]) == b"[3,true]"


@pytest.mark.parametrize("value", [MAX_EXACT_INT + 1, -MAX_EXACT_INT - 1, 10**30])
def test_integers_beyond_2_53_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*53"):
        canonical_json({"n": value})


@pytest.mark.parametrize("value", [(1, 2), {1, 2}, b"bytes", object(), {1: "int key"}, {None: 1}])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)


@pytest.mark.parametrize("value", ["\ud800", {"\udfff": 1}])
def test_lone_surrogates_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        canonical_json(value)


def load(encoded: bytes) -> object:
    # A JCS reader takes every number as a double; json.loads would read an integral float past 2**53
    # (which ECMAScript prints without an exponent, such as 65660433010000370) as an exact int.
    return json.loads(
        encoded, parse_int=lambda text: int(text) if abs(int(text)) <= MAX_EXACT_INT else float(text)
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_EXACT_INT, max_value=MAX_EXACT_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@given(json_values)
def test_round_trips_through_json_loads(value: object) -> None:
    assert load(canonical_json(value)) == value


@given(json_values)
def test_is_its_own_canonical_form(value: object) -> None:
    encoded = canonical_json(value)
    assert canonical_json(load(encoded)) == encoded


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly_in_ecmascript_form(value: float) -> None:
    text = canonical_json(value).decode("ascii")
    assert float(text) == value
    # ECMAScript never writes a trailing ".0", a leading "+", or an exponent inside 1e-6..1e21.
    assert not text.endswith(".0")
    assert ("e" in text) == (value != 0 and not 1e-6 <= abs(value) < 1e21)


def utf16_units(text: str) -> list[int]:
    units: list[int] = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units += [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
        else:
            units.append(code)
    return units


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), min_size=2, max_size=8))
def test_keys_come_out_in_utf16_order(value: dict[str, int]) -> None:
    keys = list(json.loads(canonical_json(value)))
    assert keys == sorted(value, key=utf16_units)
