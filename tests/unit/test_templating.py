"""Templates: values are shell-quoted in commands unless marked raw; text fields are not quoted;
undefined names and syntax errors are InputErrors naming where."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from orchestrator.errors import InputError
from orchestrator.model.secrets import token
from orchestrator.model.templating import render, secrets_context

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


# -- secrets, bounds, what templates may not do

SECRET_CTX: dict[str, Any] = {**CTX, "secrets": secrets_context(["pw"])}


def test_a_secret_renders_to_its_token_where_secrets_are_allowed() -> None:
    command = render("login --pw {{ secrets.pw }}", SECRET_CTX, where=WHERE, shell=True, allow_secrets=True)
    assert command == f"login --pw {token('pw')}"
    url = render("http://u:{{ secrets.pw }}@h/", SECRET_CTX, where=WHERE, shell=False, allow_secrets=True)
    assert url == f"http://u:{token('pw')}@h/"


@pytest.mark.parametrize(
    ("template", "allow", "problem"),
    [
        ("{{ secrets.pw }}", False, "puts a secret where secrets may not go"),
        ("{{ secrets.pw | upper }}", True, "a secret can only be inserted as it is"),
        ("x{{ secrets.pw ~ 'a' }}", True, "a secret can only be inserted as it is"),
        ("{{ secrets.pw | raw }}", True, "a secret can only be inserted as it is"),
        ("{{ secrets.nope }}", True, "secret 'nope' is not declared"),
        ("{{ secrets['nope'] }}", True, "secret 'nope' is not declared"),
    ],
)
def test_secrets_cannot_be_misused(template: str, allow: bool, problem: str) -> None:
    with pytest.raises(InputError) as raised:
        render(template, SECRET_CTX, where=WHERE, shell=True, allow_secrets=allow)
    assert raised.value.where == WHERE
    assert problem in raised.value.problem


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ [].pop() }}", "unsafe"),
        ("{{ range(10**9) | list }}", "too large"),
        ("{{ 'x' * 10**8 }}", "too long"),
        ("{{ ('x' * 60000) | replace('x', 'yyyyy') }}", "too long"),
        ("{{ 2 ** 100000 }}", "too large a number"),
        ("{{ 'a'.ljust(1000000) }}", "not supported"),
        ("{{ '%999999d' % 1 }}", "not supported"),
        ("{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}", "too many times"),
        ("{% for i in range(2000) %}{{ vars.flags * 100 }}{% endfor %}", "too long"),
        ("{% set x = 1 %}{{ x }}", "{% set %} is not supported"),
        ("{% macro m() %}{% endmacro %}", "{% macro %} is not supported"),
        ("{% include 'x' %}", "{% include %} is not supported"),
        ("{{ __orch_value(0, 'x') }}", "reserved"),
        ("echo \x1b[31m", "control character U+001B"),
        ("x" * 20_000, "characters long"),
    ],
)
def test_templates_are_bounded(template: str, problem: str) -> None:
    with pytest.raises(InputError) as raised:
        shell(template)
    assert raised.value.where == WHERE
    assert problem in raised.value.problem


def test_a_value_holding_a_control_character_is_refused() -> None:
    ctx = {**CTX, "vars": {"bell": "ding\x07"}}
    with pytest.raises(InputError, match=r"control character U\+0007"):
        render("echo {{ vars.bell }}", ctx, where=WHERE, shell=True)


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("echo '{{ vars.evil }}'", "inside '...' quotes"),
        ('echo "{{ vars.evil }}"', 'inside "..." quotes'),
        ("echo `echo {{ vars.evil }}`", "inside backquotes"),
        ("true # {{ vars.evil }}", "in a comment"),
    ],
)
def test_a_value_inside_the_authors_quotes_is_refused_naming_the_expression(
    template: str, where: str
) -> None:
    with pytest.raises(InputError) as raised:
        shell(template)
    assert raised.value.problem == f"{{{{ vars.evil }}}} is {where}"
    assert "{{ vars.evil | raw }}" in raised.value.expected


def test_raw_values_are_shell_syntax_and_take_part_in_the_position_check() -> None:
    assert shell("echo '{{ vars.flags | raw }}'") == "echo '--hard --quiet'"
    ctx = {**CTX, "vars": {"open": "'", "x": "y"}}
    with pytest.raises(InputError, match=r"inside '\.\.\.' quotes"):
        render("echo {{ vars.open | raw }} {{ vars.x }}", ctx, where=WHERE, shell=True)
