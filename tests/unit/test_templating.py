"""Templates: values are shell-quoted in commands unless marked raw; text fields are not quoted;
undefined names and syntax errors are InputErrors naming where."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from orchestrator.errors import InputError
from orchestrator.model.templating import render

WHERE = "playbook.yaml:12"
CTX: dict[str, Any] = {
    "host": {"name": "web1", "address": "10.0.0.11", "port": 22},
    "vars": {
        "evil": "1; rm -rf /",
        "spaced": "my file.tgz",
        "quote": "it's",
        "dir": "/opt/app",
        "port": 8080,
        "flags": "--hard --quiet",
        "empty": "",
        "list": ["a b", "c"],
    },
}


def shell(template: str) -> str:
    return render(template, CTX, where=WHERE, shell=True)


def text(template: str) -> str:
    return render(template, CTX, where=WHERE, shell=False)


@pytest.mark.parametrize(
    ("template", "rendered", "argv"),
    [
        ("echo {{ vars.evil }}", "echo '1; rm -rf /'", ["echo", "1; rm -rf /"]),
        ("tar xf {{ vars.spaced }}", "tar xf 'my file.tgz'", ["tar", "xf", "my file.tgz"]),
        ("echo {{ vars.quote }}", "echo 'it'\"'\"'s'", ["echo", "it's"]),
        ("echo {{ vars.empty }}", "echo ''", ["echo", ""]),
        # safe values stay readable
        ("{{ vars.dir }}/bin/install", "/opt/app/bin/install", ["/opt/app/bin/install"]),
        ("curl {{ host.address }}:{{ vars.port }}", "curl 10.0.0.11:8080", ["curl", "10.0.0.11:8080"]),
        # the template's own text is shell syntax, untouched
        ("a {{ vars.spaced }} && b | c", "a 'my file.tgz' && b | c", None),
        # raw opts out: the value is meant as shell syntax
        ("install {{ vars.flags | raw }}", "install --hard --quiet", ["install", "--hard", "--quiet"]),
        ("install {{ vars.flags }}", "install '--hard --quiet'", ["install", "--hard --quiet"]),
        # an explicit quote is not quoted twice
        ("echo {{ vars.evil | quote }}", "echo '1; rm -rf /'", ["echo", "1; rm -rf /"]),
        # every value in a loop is one argument
        ("ls{% for f in vars.list %} {{ f }}{% endfor %}", "ls 'a b' c", ["ls", "a b", "c"]),
    ],
)
def test_shell_templates_quote_every_value(template: str, rendered: str, argv: list[str] | None) -> None:
    assert shell(template) == rendered
    if argv is not None:
        assert shlex.split(rendered) == argv


def test_a_hostile_value_stays_one_argument() -> None:
    command = shell("rm -f /tmp/{{ vars.evil }}")
    assert shlex.split(command) == ["rm", "-f", "/tmp/1; rm -rf /"]
    assert ";" not in command.replace("'1; rm -rf /'", "")


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("http://{{ host.address }}:{{ vars.port }}/health", "http://10.0.0.11:8080/health"),
        ("http://x/?q={{ vars.spaced }}", "http://x/?q=my file.tgz"),  # text fields are never quoted
        ("/tmp/{{ vars.quote }}", "/tmp/it's"),
        ("{{ vars.flags | quote }}", "'--hard --quiet'"),
        ("orch-{{ host.name }}", "orch-web1"),
    ],
)
def test_text_templates_are_not_quoted(template: str, rendered: str) -> None:
    assert text(template) == rendered


@pytest.mark.parametrize("as_shell", [True, False])
@pytest.mark.parametrize(
    ("template", "name"),
    [("echo {{ vars.nope }}", "nope"), ("{{ hots.address }}", "hots"), ("{{ host.addr }}", "addr")],
)
def test_an_undefined_name_is_an_input_error_naming_where(template: str, name: str, as_shell: bool) -> None:
    with pytest.raises(InputError) as raised:
        render(template, CTX, where=WHERE, shell=as_shell)
    assert raised.value.where == WHERE
    assert str(raised.value).startswith(f"{WHERE}: template {template!r} uses an undefined name (")
    assert name in raised.value.problem
    assert "define it under `vars`" in raised.value.expected


@pytest.mark.parametrize("template", ["{{ vars.dir }", "{% if x %}", "{{ vars.dir | nofilter }}", "{{ }}"])
def test_a_syntax_error_is_an_input_error_naming_where(template: str) -> None:
    with pytest.raises(InputError) as raised:
        shell(template)
    assert raised.value.where == WHERE
    assert f"template syntax error in {template!r}" in raised.value.problem
    assert raised.value.expected == "valid Jinja2"


def test_templates_cannot_reach_python_internals() -> None:
    with pytest.raises(InputError) as raised:
        text("{{ vars.__class__.__mro__[1].__subclasses__() }}")
    assert raised.value.where == WHERE


def test_no_template_no_change() -> None:
    assert shell("systemctl restart app") == "systemctl restart app"
    assert text("") == ""
