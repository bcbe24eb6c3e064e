"""YAML loading with line numbers: syntax errors, duplicate keys, empty and missing files, and the
mapping from a schema error's location to the line in the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InputError
from orchestrator.model.yamlfile import LineMap, load, load_yaml, validate
from tests.unit.fakes import marked_line


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return path


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


def test_scalars_load_as_safe_load_would(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\nb: ~\nc: 0644\nd: '0644'\ne: 1.5\nf: yes\ng: 2026-01-01\nh: !!str 12\n")
    data, _ = load_yaml(path)
    assert data["a"] is None  # an empty value: a schema error later, never a YAML traceback
    assert data["b"] is None
    assert data["c"] == 420  # YAML 1.1 octal: why file modes must be quoted
    assert data["d"] == "0644"
    assert data["e"] == 1.5
    assert data["f"] is True
    assert str(data["g"]) == "2026-01-01"
    assert data["h"] == "12"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\npool: web: x  # <-\n", "mapping values are not allowed here"),
        ("pools:\n\tweb: {}  # <-\n", "found character '\\t' that cannot start any token"),
        ("name: x\n- b  # <-\n", "expected <block end>, but found '-'"),
        ("name: x\n pool: web  # <-\nx: 1\n", "mapping values are not allowed here"),
        ("a: &x 1\nb: *y  # <-\n", "found undefined alias 'y'"),
        ("a: @x  # <-\n", "found character '@' that cannot start any token"),
        ("update:\n  - run: x\n  timeout: 2  # <-\n", "expected <block end>"),
    ],
    ids=[
        "mapping in value",
        "tab",
        "list after mapping",
        "bad indent",
        "undefined alias",
        "reserved char",
        "indent",
    ],
)
def test_syntax_errors_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as raised:
        load_yaml(path)
    assert str(raised.value).startswith(f"{path}:{marked_line(text)}: YAML syntax error: ")
    assert problem in str(raised.value)
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


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
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


def test_an_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"^{tmp_path}: cannot read: "):
        load_yaml(tmp_path)  # a directory
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InputError, match=f"^{binary}: cannot read: .*; a readable UTF-8 YAML file$"):
        load_yaml(binary)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nsize: 2\ncolour: red  # <-\n", "unknown field 'colour'; remove it or check its spelling"),
        ("size: 2  # <-\n", "missing required field 'name'; add it"),
        ("name: x\nsize: big  # <-\n", "size: invalid value 'big'; Input should be a valid integer"),
        ("- name: x  # <-\n", "invalid value [{'name': 'x'}]; Input should be a valid dictionary"),
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
