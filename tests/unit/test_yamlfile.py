"""YAML loading with line numbers: syntax errors, duplicate keys, empty and missing files, the mapping
from a schema error's location to the line in the file, and the bounds a hostile file runs into.

The table ``BAD`` is the contract: each input must give exactly one InputError (nothing else may
escape) whose ``where`` is FILE:LINE with the line marked ``# <-`` (or PATH alone where no line
applies). It runs with libyaml's parser (what PyYAML wheels ship) and with the pure-Python one.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from orchestrator.app.submit import load_spec
from orchestrator.errors import InputError
from orchestrator.model import yamlfile
from orchestrator.model.inventory import Inventory
from orchestrator.model.playbook import Playbook
from orchestrator.model.templating import render
from orchestrator.model.yamlfile import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_DURATION,
    MAX_NODES,
    LineMap,
    YamlFloat,
    load,
    load_yaml,
    parse_duration,
    validate,
)
from tests.unit.fakes import GOOD_PLAYBOOK, marked_line, write_inputs


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return path


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both parsers: libyaml where PyYAML has it (the wheels do), the pure-Python one otherwise."""
    if request.param == "python":
        monkeypatch.setattr(yamlfile, "_FAST_LOADER", None)
    elif yamlfile._FAST_LOADER is None:
        pytest.skip("PyYAML without libyaml")
    return str(request.param)


def test_values_and_the_line_of_every_node(tmp_path: Path) -> None:
    path = write(tmp_path, "# a comment\nname: x\npools:\n  web:\n    hosts:\n      - a\n      - {b: 1}\n")
    data, lines = load_yaml(path)
    assert data == {"name": "x", "pools": {"web": {"hosts": ["a", {"b": 1}]}}}
    assert lines.line(("name",)) == 2
    assert lines.line(("pools", "web")) == 4
    assert lines.line(("pools", "web", "hosts", 0)) == 6
    assert lines.line(("pools", "web", "hosts", 1, "b")) == 7
    # a location deeper than the file goes to the deepest node that exists
    assert lines.line(("pools", "web", "hosts", 1, "b", "c", 3)) == 7
    assert lines.line(("pools", "db")) == 3
    assert lines.where(("name",)) == f"{path}:2"


def test_a_line_map_from_locations() -> None:
    lines = LineMap(Path("x.yaml"), {(): 2, ("a",): 3, ("a", "b", 0): 7})
    assert (lines.line(()), lines.line(("a",)), lines.line(("a", "b")), lines.line(("a", "b", 0, "c"))) == (
        2,
        3,
        3,
        7,
    )
    assert LineMap(Path("x.yaml")).line(("a",)) == 1


def test_scalars_load_as_safe_load_would(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\nb: ~\nc: 0644\nd: '0644'\ne: 1.5\nf: yes\ng: 2026-01-01\nh: !!str 12\n")
    data, _ = load_yaml(path)
    assert data["a"] is None  # an empty value: a schema error later, never a YAML traceback
    assert data["b"] is None
    assert data["c"] == 420  # YAML 1.1 octal: why file modes must be quoted
    assert data["d"] == "0644"
    assert data["e"] == 1.5
    assert data["f"] is True
    assert data["g"] == "2026-01-01"  # a date stays the text written: nothing in a schema wants a date
    assert data["h"] == "12"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\npool: web: x  # <-\n", "mapping values are not allowed"),
        ("pools:\n\tweb: {}  # <-\n", "found character '\\t' that cannot start any token"),
        ("name: x\n- b  # <-\n", ("expected <block end>, but found '-'", "did not find expected key")),
        ("name: x\n pool: web  # <-\nx: 1\n", "mapping values are not allowed"),
        ("a: @x  # <-\n", "found character '@' that cannot start any token"),
        ("update:\n  - run: x\n  timeout: 2  # <-\n", ("expected <block end>", "did not find expected '-'")),
    ],
    ids=["mapping in value", "tab", "list after mapping", "bad indent", "reserved char", "indent"],
)
def test_syntax_errors_name_the_line(
    tmp_path: Path, parser: str, text: str, problem: str | tuple[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_yaml(path)
    assert str(raised.value).startswith(f"{path}:{marked_line(text)}: YAML syntax error: ")
    assert any(p in str(raised.value) for p in ((problem,) if isinstance(problem, str) else problem))
    assert str(raised.value).endswith("; valid YAML")


@pytest.mark.parametrize(
    "text",
    [
        "name: a\npool: web\nname: b  # <-\n",
        "pools:\n  web:\n    hosts: {}\n  web:  # <-\n    hosts: {}\n",
        "vars: {a: 1, b: 2, a: 3}  # <-\n",
        "hosts:\n  - {address: x, vars: {}}\n  - address: y\n    address: z  # <-\n",
    ],
    ids=["top level", "nested", "flow mapping", "in a list"],
)
def test_duplicate_keys_are_refused_at_the_second_one(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_yaml(path)
    assert str(raised.value).startswith(f"{path}:{marked_line(text)}: duplicate key ")
    assert str(raised.value).endswith("; each key once")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = 1


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n", "\ufeff", "---\n...\n"])
def test_an_empty_file_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load(Model, path)
    assert str(raised.value) == f"{path}:1: the file is empty; a model mapping"


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as raised:
        load_yaml(path)
    assert str(raised.value) == f"{path}: file not found; give the path of an existing YAML file"


def test_a_directory_or_an_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        load_yaml(tmp_path)
    assert str(raised.value) == f"{tmp_path}: this is a directory; give the path of a YAML file in it"
    if os.geteuid() == 0:
        return  # root reads anything
    locked = write(tmp_path, "a: 1\n")
    locked.chmod(0)
    with pytest.raises(InputError) as raised:
        load_yaml(locked)
    assert str(raised.value) == f"{locked}: permission denied; a YAML file you may read"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nsize: 2\ncolour: red  # <-\n", "unknown field 'colour'; remove it or check its spelling"),
        ("size: 2  # <-\n", "missing required field 'name'; add it"),
        ("name: x\nsize: big  # <-\n", "size: invalid value 'big'; Input should be a valid integer"),
        ("- name: x  # <-\n", "the file holds a list, not a mapping; a model mapping"),
    ],
)
def test_schema_errors_become_one_line_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load(Model, path)
    assert str(raised.value).startswith(f"{path}:{marked_line(text)}: {message}")


def test_validate_reports_the_first_error_only(tmp_path: Path) -> None:
    lines = LineMap(tmp_path / "x.yaml", {(): 1, ("size",): 3})
    with pytest.raises(InputError) as raised:
        validate(Model, {"size": "big", "other": 1}, lines)
    assert "\n" not in str(raised.value)
    assert raised.value.where == f"{tmp_path / 'x.yaml'}:1"


# ---- the table of bad inputs ----------------------------------------------------------------------

INVENTORY_HEAD = "pools:\n  web:\n    loadbalancer: {type: haproxy, socket: /s, backend: b}\n"
BOOK_HEAD = "name: x\npool: web\nchecks: [{tcp: {port: 22}}]\n"


@dataclass(frozen=True)
class Bad:
    """An input, the line its error names (from the ``# <-`` marker; 0 for PATH alone), what the
    problem and the expected parts contain, and the model it is validated against (None: loading
    alone must refuse it). ``alternatives`` are problems another parser may report instead."""

    data: bytes
    problem: str
    expected: str = ""
    model: type[BaseModel] | None = None
    line: int = -1
    alternatives: tuple[str, ...] = ()
    slow: bool = False  # too slow for the pure-Python parser in a unit run

    def want_line(self) -> int:
        if self.line >= 0:
            return self.line
        return marked_line(self.data.decode("utf-8", "replace"))


def bad(
    name: str,
    text: str | bytes,
    problem: str,
    expected: str = "",
    *,
    xfail: str = "",
    **extra: Any,
) -> Any:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(Bad(data, problem, expected, **extra), id=name, marks=marks)


def nested(depth: int) -> str:
    """``depth`` block mappings, one per line; the last line is the deepest."""
    return "".join(" " * i + "k:\n" for i in range(depth - 1)) + " " * (depth - 1) + "k: 1  # <-\n"


BAD = [
    # -- reading: size, encoding, characters
    bad("too large", b"a: 1\n" + b"#" * MAX_BYTES, "the file is larger than 5 MB", "a few kB", line=0),
    bad("UTF-16", "a: 1\n".encode("utf-16"), "the file is UTF-16", "UTF-8", line=1),
    bad("NUL byte", b"a: 1\nb: \x00  # <-\n", "a NUL byte: this is not a text file", "a YAML text file"),
    bad("not UTF-8", b"a: 1\nb: 2\nc: caf\xe9  # <-\n", "bytes that are not UTF-8 (b'\\xe9", "UTF-8"),
    bad("truncated UTF-8", b"a: caf\xc3", "bytes that are not UTF-8 (b'\\xc3')", line=1),
    bad("raw control char", "a: 1\nb: \x07  # <-\n", "control character U+0007 in the file", "remove it"),
    bad("raw DEL", "a: 1\nb: x\x7f  # <-\n", "control character U+007F in the file", "remove it"),
    bad("raw C1 control", "a: \x9b31m  # <-\n", "control character U+009B in the file", "remove it"),
    bad("raw ESC in a quoted value", "a: '\x1b[31m'  # <-\n", "control character U+001B in the file"),
    bad("lone CR", "a: 1  # <-\rb: 2\n", "a carriage return (CR) without a newline", "LF or CRLF"),
    bad(
        "U+2028",  # str.splitlines() splits there too: the line is given
        "a: 1\nb: x\u2028y\n",
        "character U+2028 (LINE SEPARATOR), which YAML reads as a line",
        line=2,
    ),
    bad(  # found by fuzzing: libyaml skips it, PyYAML makes it part of the key '\ufeff web'
        "BOM inside the file",
        "pools:\n\ufeff web:  # <-\n    a: 1\n",
        "a byte order mark (U+FEFF) inside the file",
        "remove it",
    ),
    bad(  # found by fuzzing (lab-v2.yaml with one indentation space replaced): the parsers disagreed
        "BOM as indentation",
        "update:\n  - run: a\n\ufeff   timeout: 60s  # <-\n",
        "a byte order mark (U+FEFF) inside the file",
    ),
    bad("two BOMs", b"\xef\xbb\xbf\xef\xbb\xbfa: 1\n", "a byte order mark (U+FEFF) inside the file", line=1),
    bad(
        "NEL",
        "a: 1\nb: x\x85y\n",
        "character U+0085, which YAML reads as a line break",
        "a plain newline",
        line=2,
    ),
    bad("non-character U+FFFF", "a: 1\nb: \uffff  # <-\n", "character U+FFFF, which YAML does not allow"),
    # -- anchors, aliases, merge keys
    bad("anchor", "a: 1\nb: &x 2  # <-\nc: 3\n", "YAML anchors and aliases are not supported", "out in full"),
    bad("alias", "a: 1\nb: *x  # <-\n", "YAML anchors and aliases are not supported", "out in full"),
    bad("anchor on a mapping", "a: &m  # <-\n  b: 1\n", "YAML anchors and aliases are not supported"),
    bad(
        "billion laughs",
        'a: &a ["lol","lol","lol"]  # <-\nb: &b [*a,*a,*a]\nc: &c [*b,*b,*b]\nd: [*c,*c,*c]\n',
        "YAML anchors and aliases are not supported",
    ),
    bad(
        "merge key with an alias",
        "base: {x: 1}\nweb:\n  <<: *base  # <-\n",
        "merge keys (<<) are not supported",
    ),
    bad("merge key", "web:\n  <<: {x: 1}  # <-\n", "merge keys (<<) are not supported", "write the keys out"),
    bad("merge as a value", "a: <<  # <-\n", "merge keys (<<) are not supported", "quote '<<' if it is text"),
    # -- tags
    bad("vault", "a: 1\npassword: !vault |  # <-\n  $ANSIBLE_VAULT;1.1;AES256\n", "tags are not supported"),
    bad(
        "vault hint",
        "password: !vault x  # <-\n",
        "!vault",
        "`secrets: {NAME: {env: VAR}}` or `{file: PATH}`",
    ),
    bad("python object", "a: !!python/object:os.system x  # <-\n", "tags are not supported (found !!python"),
    bad("python name", "a: !!python/name:os.system  # <-\n", "tags are not supported (found !!python/name"),
    bad("CloudFormation", "a: !Ref Bucket  # <-\n", "tags are not supported (found !Ref)", "remove it"),
    bad("tag on a mapping", "a: !Thing  # <-\n  b: 1\n", "tags are not supported (found !Thing)"),
    bad("binary", "a: !!binary aGVsbG8=  # <-\n", "tags are not supported (found !!binary)"),
    bad("set", "a: !!set {x, y}  # <-\n", "tags are not supported (found !!set)"),
    bad("omap", "a: !!omap [x: 1]  # <-\n", "tags are not supported (found !!omap)"),
    bad("pairs", "a: !!pairs [x: 1]  # <-\n", "tags are not supported (found !!pairs)"),
    bad("timestamp tag", "a: !!timestamp 2026-01-01  # <-\n", "tags are not supported (found !!timestamp)"),
    bad("non-specific tag", "a: ! 12  # <-\n", "tags are not supported (found !)"),
    bad(
        "%TAG redefines !!",
        "%TAG !! tag:evil.com,2000:\n---\na: !!str x  # <-\n",
        "found tag:evil.com,2000:str",
    ),
    bad("escaped tag", "a: !<%0A> x  # <-\n", "tags are not supported (found \\n)"),
    bad(
        "!!int on text",
        "a: 1\nb: !!int abc  # <-\n",
        "!!int on 'abc', which is not an integer",
        "drop the tag",
    ),
    bad("!!float on text", "a: !!float x  # <-\n", "!!float on 'x', which is not a number"),
    bad("!!bool on text", "a: !!bool maybe  # <-\n", "!!bool on 'maybe', which is not a boolean"),
    bad("!!null on text", "a: !!null x  # <-\n", "!!null on 'x', which is not null"),
    bad("!!int on nothing", "a: !!int  # <-\n", "!!int on '', which is not an integer"),
    bad("!!map on a scalar", "a: !!map x  # <-\n", "the tag !!map on a value", "drop the tag"),
    bad("!!seq on a mapping", "a: !!seq {b: 1}  # <-\n", "the tag !!seq on a mapping", "drop the tag"),
    bad("!!str on a list", "a: !!str [1]  # <-\n", "the tag !!str on a list", "drop the tag"),
    # -- keys
    bad("list as a key", "a: 1\n? [a, b]  # <-\n: 1\n", "a list as a key", "keys are names"),
    bad("flow mapping as a key", "{a: 1}: 2  # <-\n", "a mapping as a key", "keys are names"),
    bad("flow list as a key", "x: 1\n[a]: 2  # <-\n", "a list as a key"),
    bad("complex key in a flow mapping", "a: {? [x]: 1}  # <-\n", "a list as a key"),
    bad(
        "null key", "a: 1\n~: 2  # <-\n", "a key that YAML reads as null", "give the key a name, or quote it"
    ),
    bad("empty key", "a: 1\n? # <-\n: 2\n", "a key that YAML reads as null"),
    bad("bool key", "a: 1\nyes: 2  # <-\n", "the key 'yes' is read by YAML as a boolean", "quote it: 'yes':"),
    bad(
        "Norway",
        "countries:\n  FR: France\n  NO: Norway  # <-\n",
        "the key 'NO' is read by YAML as a boolean",
    ),
    bad(
        "float key", "1.5: x  # <-\n", "the key '1.5' is read by YAML as a number with a fraction", "quote it"
    ),
    bad("inf key", ".inf: x  # <-\n", "the key '.inf' is read by YAML as a number with a fraction"),
    bad(
        "huge int key", "99999999999999999999: x  # <-\n", "the number '99999999999999999999' is out of range"
    ),
    bad(
        "control char in a key", 'a: 1\n"b\\x1b": 2  # <-\n', "control character U+001B in a key", "remove it"
    ),
    bad("duplicate key", "a: 1\nb: 2\na: 3  # <-\n", "duplicate key 'a'", "each key once"),
    bad("duplicate int key", "200: ok\n0310: again  # <-\n", "duplicate key 200", "each key once"),
    bad(
        "duplicate huge key",
        f"{'k' * 100}: 1\n{'k' * 100}: 2  # <-\n",
        "duplicate key 'kkkkkk",
        "each key once",
    ),
    # -- numbers
    bad(
        "int above 64 bits",
        "a: 9999999999999999999999999999  # <-\n",
        "is out of range",
        "-9223372036854775808",
    ),
    bad(
        "int just above 64 bits", "a: 9223372036854775808  # <-\n", "the number '9223372036854775808' is out"
    ),
    bad("int just below 64 bits", "a: -9223372036854775809  # <-\n", "is out of range"),
    bad(
        "hex above 64 bits",
        "a: 0x8000000000000000  # <-\n",
        "the number '0x8000000000000000' is out of range",
    ),
    bad("5000 digits", "a: " + "9" * 5000 + "  # <-\n", "is out of range"),  # int() itself refuses past 4300
    bad("base 60 above 64 bits", "a: " + "59:" * 30 + "59  # <-\n", "is out of range"),
    bad("hex without digits", "a: 0x_  # <-\n", "'0x_' looks like a number but is not one", "quote it"),
    bad("binary without digits", "a: 0b_  # <-\n", "'0b_' looks like a number but is not one"),
    bad("float overflow", "a: 1.0e+400  # <-\n", "the number '1.0e+400' is too large", "64-bit float"),
    # -- text with control characters from escapes
    bad("escape ESC", 'a: 1\nb: "\\x1b[31mred"  # <-\n', "control character U+001B in a value", "remove it"),
    bad("escape NUL", 'a: "\\0"  # <-\n', "control character U+0000 in a value"),
    bad("escape CR", 'a: "x\\ry"  # <-\n', "control character U+000D in a value"),
    bad("escape e", 'a: "\\e"  # <-\n', "control character U+001B in a value"),
    bad("escape N (NEL)", 'a: "\\N"  # <-\n', "control character U+0085 in a value"),
    bad("reserved U+001E", 'a: "x\\x1ey"  # <-\n', "control character U+001E in a value"),
    bad("reserved U+001F", 'a: "x\\u001fy"  # <-\n', "control character U+001F in a value"),
    bad(
        "lone surrogate",
        'a: "\\ud800"  # <-\n',
        "control character U+D800 in a value",
        alternatives=("YAML syntax error: found invalid Unicode character escape code",),  # libyaml
    ),
    bad(
        "control in a multi-line value", 'a: 1\nb: "multi  # <-\n  line \\x07"\n', "control character U+0007"
    ),
    bad(  # found by fuzzing: PyYAML's pure-Python scanner calls chr() unchecked (ValueError)
        "escape beyond U+10FFFF",
        'a: 1\nname: "\\U00110000"  # <-\n',
        "YAML syntax error: found invalid Unicode character escape code",
        "valid YAML",
    ),
    # -- structure
    bad("two documents", "a: 1\n---  # <-\nb: 2\n", "a second YAML document", "one YAML document per file"),
    bad("an empty second document", "a: 1\n--- # <-\n", "a second YAML document"),
    bad("document after ...", "a: 1\n...\n--- # <-\nb: 2\n", "a second YAML document"),
    bad(f"{MAX_DEPTH + 1} levels", nested(MAX_DEPTH + 1), f"more than {MAX_DEPTH} levels of nesting"),
    bad(  # found by fuzzing: 2.08 s of CPU (the builder made a line node with a dict for every scalar)
        "a node limit's worth of lists under update",
        "update: [" + ", ".join(["[1, 2]"] * ((MAX_NODES - 20) // 3)) + "]  # <-\n",
        "missing required field 'name'",
        "add it",
        model=Playbook,
        line=1,
        slow=True,
    ),
    bad(  # found by fuzzing: 2.25 s of CPU on a loaded machine (run queue 4-6 on 2 CPUs), 0.5 s alone
        "100,000 mappings under update",
        "name: x\npool: w\nupdate: ["
        + ", ".join(["{upload: 1}"] * 100_000)
        + "]  # <-\nchecks: [{upload: 1}]\n",
        f"more than {MAX_NODES} values in the file",
        slow=True,
    ),
    bad(  # found by fuzzing: 2.01 s (199,980 validator errors, each converted with its input)
        "a node limit's worth of nulls under update",
        "name: x\npool: w\nupdate: [" + ", ".join(["null"] * (MAX_NODES - 20)) + "]  # <-\nchecks: [null]\n",
        "update.0: unknown step kind (None)",
        "a step is a mapping with one of: run, upload",
        model=Playbook,
        slow=True,
    ),
    bad("1000 flow levels", "a: " + "[" * 1000 + "]" * 1000 + "  # <-\n", "nesting"),  # was a RecursionError
    bad("100000 open brackets", "[" * 100_000 + " # <-", "nesting"),
    bad(
        "one value past the node limit",
        "- 1\n" * (MAX_NODES - 1) + "- 1  # <-\n",
        f"more than {MAX_NODES} values",
        slow=True,
    ),
    # -- the document is not a mapping
    bad(
        "a list",
        "- name: x  # <-\n- b\n",
        "the file holds a list, not a mapping",
        "a playbook mapping",
        model=Playbook,
    ),
    bad(
        "text",
        "\n\njust text  # <-\n",
        "the file holds text, not a mapping",
        "a playbook mapping",
        model=Playbook,
    ),
    bad("a number", "42  # <-\n", "the file holds a single value (42), not a mapping", model=Inventory),
    bad("a block scalar", "--- |  # <-\n  text\n", "the file holds text, not a mapping", model=Inventory),
    # -- schema errors: the line and the field as written, never a class, a tag or a pydantic internal
    bad(
        "a field in a union member",
        "name: x\npool: web\nupdate:\n  - run: a\n    timout: 3  # <-\nchecks: [{tcp: {port: 22}}]\n",
        "update.0: unknown field 'timout'",
        "check its spelling",
        model=Playbook,
    ),
    bad(
        "a wrong value in a union member",
        BOOK_HEAD + "update:\n  - run: a\n    timeout: soon  # <-\n",
        "update.0.timeout: 'soon' is not a duration",
        "'15m'",
        model=Playbook,
    ),
    bad(
        "a field in a tagged union member",
        INVENTORY_HEAD
        + "    hypervisor:\n      type: command\n      create: c\n      revert: r\n      delete: d\n"
        "      timout: 5m  # <-\n    hosts: {a: {address: x}}\n",
        "pools.web.hypervisor: unknown field 'timout'",
        model=Inventory,
    ),
    bad(
        "missing in a tagged union member",
        INVENTORY_HEAD + "    hypervisor:  # <-\n      type: command\n      create: c\n      revert: r\n"
        "    hosts: {a: {address: x}}\n",
        "pools.web.hypervisor: missing required field 'delete'",
        "add it",
        model=Inventory,
    ),
    bad(
        "a model where a scalar is",
        "pools:\n  web:\n    loadbalancer: 5  # <-\n    hosts: {a: {address: x}}\n",
        "pools.web.loadbalancer: invalid value 5",
        "Input should be a mapping (key: value)",
        model=Inventory,
    ),
    bad(
        "a path that is a number",
        "pools:\n  web:\n    loadbalancer: {socket: 3, backend: b}  # <-\n    hosts: {a: {address: x}}\n",
        "pools.web.loadbalancer.socket: invalid value 3",
        "Input is not a valid path",
        model=Inventory,
    ),
    bad(
        "a dict key that breaks a pattern",
        INVENTORY_HEAD + "    hosts:\n      'bad name!': {address: x}  # <-\n",
        "pools.web.hosts.'bad name!': invalid value 'bad name!'",
        "String should match pattern",
        model=Inventory,
    ),
    bad(
        "an int where a name is",
        INVENTORY_HEAD + "    hosts:\n      1: {address: x}  # <-\n",
        "pools.web.hosts.1: invalid value 1",
        "Input should be a valid string",
        model=Inventory,
    ),
    bad(
        "a float where text is",
        "name: 2026.10  # <-\npool: web\n",
        "name: invalid value 2026.10",
        "Input should be a valid string",
        model=Playbook,
    ),
    bad(
        "a newline in a value reaches a message",
        BOOK_HEAD
        + 'update: [{run: a}]\nwindow: {timezone: "Europe/Paris\\nx", allowed: [Sat 01:00-05:00]}  # <-\n',
        "window.timezone: unknown time zone 'Europe/Paris\\nx'",
        model=Playbook,
    ),
    bad(
        "a huge value in a message",
        BOOK_HEAD + "update: [{run: a}]\nvars: [" + ", ".join(["x" * 50] * 2000) + "]  # <-\n",
        "vars: invalid value ['xxxxx",
        "Input should be a valid dictionary",
        model=Playbook,
    ),
    bad(
        "hosts as a list",
        INVENTORY_HEAD + "    hosts: [a, b]  # <-\n",
        "pools.web.hosts: invalid value ['a', 'b']",
        model=Inventory,
    ),
    bad(
        "an infinite timeout",
        BOOK_HEAD + "update:\n  - run: a\n    timeout: .inf  # <-\n",
        "update.0.timeout: .inf is not a duration",
        model=Playbook,
    ),
    bad(
        "a timeout of 31 days",
        BOOK_HEAD + "drain: {timeout: 744h}  # <-\nupdate: [{run: a}]\n",
        "drain.timeout: '744h' is longer than 30 days",
        "a duration up to 30 days",
        model=Playbook,
    ),
]


def _raise_for(row: Bad, path: Path) -> InputError:
    with pytest.raises(InputError) as raised:  # any other exception fails the test
        data, lines = load_yaml(path)
        if row.model is not None:
            validate(row.model, data, lines, context={"base_dir": str(path.parent)})
    return raised.value


@pytest.mark.parametrize("row", BAD)
def test_each_bad_input_is_one_error_at_its_line(tmp_path: Path, parser: str, row: Bad) -> None:
    if row.slow and parser == "python":
        pytest.skip("slow with the pure-Python parser")
    path = tmp_path / "f.yaml"
    path.write_bytes(row.data)
    start = time.process_time()
    error = _raise_for(row, path)
    assert time.process_time() - start < 2  # seconds of CPU, whatever the input
    line = row.want_line()
    assert error.where == (f"{path}:{line}" if line else str(path)), str(error)
    assert any(p in error.problem for p in (row.problem, *row.alternatives)), str(error)
    assert row.expected in error.expected, str(error)
    assert "\n" not in str(error) and len(str(error)) < len(str(path)) + 600
    for internal in ("function-", "[key]", "<class", "instance of", "RunStep", "Config", "Value error"):
        assert internal not in str(error)


# ---- accepted inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("\ufeffa: 1\n", {"a": 1}),  # a UTF-8 byte order mark
        ("a: b\r\nc: d\r\n", {"a": "b", "c": "d"}),  # CRLF line ends
        (
            "a: !!str 12\nb: !!int 0x1f\nc: !!bool yes\nd: !!null ~\n",
            {"a": "12", "b": 31, "c": True, "d": None},
        ),
        ("a: !!float 1\nb: !!map {x: 1}\nc: !!seq [1]\n", {"a": 1.0, "b": {"x": 1}, "c": [1]}),
        ("a: !<tag:yaml.org,2002:str> 5\n", {"a": "5"}),
        (
            "a: 2026-12-01\nb: 2026-13-45\nc: 2026-12-01 10:00:00Z\n",
            {"a": "2026-12-01", "b": "2026-13-45", "c": "2026-12-01 10:00:00Z"},
        ),
        ("a: =\n", {"a": "="}),  # YAML 1.1's "value" type, which safe_load could not build
        ("a: 9223372036854775807\nb: -9223372036854775808\n", {"a": 2**63 - 1, "b": -(2**63)}),
        (
            "a: 0b101\nb: 0x_1F\nc: 1_000\nd: 1:30\ne: +12\nf: 0\n",
            {"a": 5, "b": 31, "c": 1000, "d": 90, "e": 12, "f": 0},
        ),
        ("'<<': 1\n\"yes\": 2\n'1.5': 3\n200: 4\n", {"<<": 1, "yes": 2, "1.5": 3, 200: 4}),
        ("? a\n? b\n", {"a": None, "b": None}),
        ("a: \"tab\\there\\nnewline\"\nb: '\\x1b'\n", {"a": "tab\there\nnewline", "b": "\\x1b"}),
        ('a: "\\u00e9\\_\\U0001F600"\n', {"a": "\u00e9\u00a0\U0001f600"}),
        ("a: [b: 1, c]\n", {"a": [{"b": 1}, "c"]}),
        ("%YAML 1.1\n---\na: 1\n...\n", {"a": 1}),
        ("a: '" + "x" * 100_000 + "'\n", {"a": "x" * 100_000}),
    ],
)
def test_accepted_inputs_load_as_written(tmp_path: Path, parser: str, text: str, data: Any) -> None:
    loaded, _ = load_yaml(write(tmp_path, text))
    assert loaded == data
    assert type(loaded) is type(data)


def test_a_date_is_text_wherever_text_is_expected(tmp_path: Path) -> None:
    data, lines = load_yaml(
        write(
            tmp_path,
            "name: 2026-12-01\npool: 2026-12-01 10:00:00\nupdate: [{run: a}]\nchecks: [{tcp: {port: 22}}]\n",
        )
    )
    book = validate(Playbook, data, lines)
    assert (book.name, book.pool) == ("2026-12-01", "2026-12-01 10:00:00")


def test_floats_keep_their_text(tmp_path: Path) -> None:
    loaded, _ = load_yaml(
        write(tmp_path, "a: 2026.10\nb: 1.0e+3\nc: .inf\nd: -.Inf\ne: .NaN\nf: 1_000.5\ng: 1:30.5\n")
    )
    assert [str(v) for v in loaded.values()] == [
        "2026.10",
        "1.0e+3",
        ".inf",
        "-.Inf",
        ".NaN",
        "1_000.5",
        "1:30.5",
    ]
    assert [float(v) for v in loaded.values()][:4] == [2026.1, 1000.0, float("inf"), float("-inf")]
    assert loaded["g"] == 90.5 and loaded["f"] == 1000.5
    assert all(isinstance(v, YamlFloat) for v in loaded.values())


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_the_limit_loads(tmp_path: Path, depth: int) -> None:
    data, lines = load_yaml(write(tmp_path, nested(depth)))
    for _ in range(depth - 1):
        data = data["k"]
    assert data == {"k": 1}
    assert lines.line(("k",) * depth) == depth


def test_the_node_limit_is_exact(tmp_path: Path) -> None:
    data, _ = load_yaml(write(tmp_path, "- 1\n" * (MAX_NODES - 1)))  # the list itself is a node
    assert len(data) == MAX_NODES - 1


def test_a_file_at_the_size_limit_loads_quickly(tmp_path: Path) -> None:
    text = "a: |\n" + ("  " + "x" * 97 + "\n") * ((MAX_BYTES - 10) // 100)
    assert len(text) <= MAX_BYTES
    start = time.perf_counter()
    data, _ = load_yaml(write(tmp_path, text))
    assert time.perf_counter() - start < 2
    assert len(data["a"]) > MAX_BYTES * 0.9


# ---- streams: never read past MAX_BYTES + 1 ------------------------------------------------------


def test_dev_zero_is_refused_after_max_bytes() -> None:
    start = time.perf_counter()
    with pytest.raises(InputError) as raised:
        load_yaml(Path("/dev/zero"))
    assert str(raised.value) == "/dev/zero: the file is larger than 5 MB; a playbook or inventory of a few kB"
    assert time.perf_counter() - start < 2


@pytest.fixture
def endless_fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe whose writer would write forever; it stops when the reader closes its end."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    written = [0]

    def writer() -> None:
        try:
            with open(fifo, "wb") as out:
                while written[0] < 50 * MAX_BYTES:
                    out.write(b"a: 1\n" * 10_000)
                    written[0] += 50_000
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield fifo
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert written[0] < 2 * MAX_BYTES  # the reader stopped after MAX_BYTES + 1 and closed


def test_an_endless_fifo_is_refused_after_max_bytes(endless_fifo: Path) -> None:
    with pytest.raises(InputError, match="the file is larger than 5 MB"):
        load_yaml(endless_fifo)


def test_stdin_and_process_substitution_load() -> None:
    script = (
        "import sys; from pathlib import Path; from orchestrator.model.yamlfile import load_yaml;"
        "print(load_yaml(Path(sys.argv[1]))[0])"
    )
    piped = subprocess.run(
        [sys.executable, "-c", script, "/dev/stdin"],
        input="a: 1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "{'a': 1}\n", piped.stderr
    substituted = subprocess.run(
        ["bash", "-c", f"{sys.executable} -c \"$0\" <(printf 'b: [2]\\n')", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert substituted.stdout == "{'b': [2]}\n", substituted.stderr


def test_the_cli_prints_one_line_for_an_alias_bomb(tmp_path: Path) -> None:
    _, inventory = write_inputs(tmp_path)
    book = tmp_path / "bomb.yaml"
    book.write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("orchestrator")), "validate", str(book), "-i", str(inventory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "60", "NO_COLOR": "1"},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {book}:1: YAML anchors and aliases are not supported; write the value out in full"
    ]


# ---- YamlFloat -------------------------------------------------------------------------------------


def test_a_yaml_float_is_a_float_that_prints_as_written() -> None:
    value = YamlFloat("2026.10")
    assert (str(value), repr(value), f"{value}") == ("2026.10", "2026.10", "2026.10")
    assert value == 2026.1 and hash(value) == hash(2026.1) and value < 2027
    assert type(value + 1) is float and value + 1 == 2027.1
    assert copy.deepcopy(value) is value and copy.copy(value) is value
    again = pickle.loads(pickle.dumps(value))
    assert type(again) is YamlFloat and str(again) == "2026.10" and again == value
    assert isinstance(copy.deepcopy({"v": [value]})["v"][0], YamlFloat)


def test_pydantic_keeps_a_yaml_float_in_any_fields_and_templates_render_its_text(tmp_path: Path) -> None:
    data, lines = load_yaml(
        write(
            tmp_path,
            "name: x\npool: web\nupdate: [{run: a}]\nchecks: [{tcp: {port: 22}}]\n"
            "vars: {version: 2026.10, l: [1.50]}\n",
        )
    )
    book = validate(Playbook, data, lines)
    assert type(book.vars["version"]) is YamlFloat and type(book.vars["l"][0]) is YamlFloat
    assert type(book.model_copy(deep=True).vars["version"]) is YamlFloat
    assert book.model_dump()["vars"]["version"].text == "2026.10"
    assert (
        render("v{{ vars.version }} {{ vars.l }}", {"vars": book.vars}, where="x", shell=False)
        == "v2026.10 [1.50]"
    )


def test_a_yaml_float_renders_as_written_in_a_command(tmp_path: Path) -> None:
    playbook = GOOD_PLAYBOOK.replace('vars: {version: "2"}', "vars: {version: 2026.10}").replace(
        "/bin/install /tmp", "/bin/install --version {{ vars.version }} /tmp"
    )
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook))
    assert spec.hosts["web1"].steps[1].command == "/opt/app/bin/install --version 2026.10 /tmp/app-2.tar.gz"


# ---- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("150ms", 0.15),
        ("2s", 2.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        (0, 0.0),
        ("0s", 0.0),
        ("720h", MAX_DURATION),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        float("inf"),
        float("-inf"),
        float("nan"),
        YamlFloat(".inf"),
        YamlFloat(".nan"),
        -1,
        -0.001,
        True,
        False,
        None,
        "1d",
        "-5s",
        "1" * 50,
        "1" + " " * 100_000 + "x",  # quadratic backtracking for a careless pattern
    ],
)
def test_not_durations(value: object) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"is not a duration; a number of seconds or e\.g\. '500ms'"):
        parse_duration(value)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize("value", [MAX_DURATION + 1, 2**63 - 1, "721h", "43201m", "2592001"])
def test_durations_past_30_days_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"is longer than 30 days; a duration up to 30 days \('720h'\)$"):
        parse_duration(value)


# ---- validate: in time at the node limit -----------------------------------------------------------


def test_a_document_at_the_node_limit_full_of_errors_is_refused_in_time(tmp_path: Path) -> None:
    # every item fails a validator: pydantic makes MAX_NODES - 20 errors; only the first is converted
    items = ",".join(["x"] * (MAX_NODES - 20))
    path = write(tmp_path, f"name: x\npool: web\nchecks: [{{tcp: {{port: 22}}}}]\nupdate: [{items}]\n")
    start = time.process_time()
    with pytest.raises(InputError, match=r":4: update.0: unknown step kind \('x'\)"):
        load(Playbook, path)
    assert time.process_time() - start < 2  # of CPU: wall time on a shared machine is noise


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cyclic_collector_is_left_as_it_was(tmp_path: Path, enabled: bool) -> None:
    import gc

    path = write(tmp_path, "name: x\nsize: big\n")
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(InputError):
            load(Model, path)
        assert load(Model, write(tmp_path, "name: x\n"))[0].name == "x"
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


# ---- validate: a validator's own bug is still one line ------------------------------------------


class Buggy(BaseModel):
    name: str

    @pydantic.model_validator(mode="before")
    @classmethod
    def _boom(cls, data: Any) -> Any:
        return data["nope"]


def test_a_crash_in_a_validator_is_one_line_naming_a_bug(tmp_path: Path) -> None:
    path = write(tmp_path, "\nname: x\n")
    with pytest.raises(InputError) as raised:
        load(Buggy, path)
    assert str(raised.value) == (
        f"{path}:2: the buggy could not be checked: KeyError: 'nope'; "
        "this is a bug in the orchestrator; please report it with the file"
    )
