"""Templates in playbooks and inventories: `{{ host.address }}`, `{{ vars.version }}`, `{{ secrets.pw }}`.

The rules, all enforced when a template is rendered (so at `validate`, before any server is touched):

- **Shell templates** (update `run` steps, command checks, the session probe and warning, command
  snapshots): every substituted value is shell-quoted for the author, so a value holding
  `1; rm -rf /` stays one inert argument. Quoting only protects a value that stands where a word
  stands, so a `{{ }}` inside the author's own quotes ('...' or "..."), backquotes, `${...}`, a
  comment or a here-document, or after a backslash, is refused (see ``shellwords``): write the
  template without quotes around it. ``{{ x | raw }}`` inserts a value as shell syntax, unquoted and
  unchecked: the author's explicit choice.
- **Text templates** (URLs, headers, paths, names, expected values): values are inserted as they are.
- **Secrets** (``{{ secrets.NAME }}``) render to a token, never to their value (see ``model.secrets``),
  and only where a field allows them. A secret can only be inserted as it is: no filter, no
  concatenation, no test on it.
- **Bounded**: Jinja2's immutable sandbox, no assignments, macros, includes or imports; a small set of
  filters; loops, ranges, repetition and big numbers bounded; at most MAX_SOURCE characters of template
  and MAX_RENDERED of result. Undefined names are errors (StrictUndefined). Any failure is one
  InputError naming where.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.errors import InputError
from orchestrator.model import shellwords
from orchestrator.model.secrets import token

MAX_SOURCE = 16 * 1024  # characters of one template
MAX_RENDERED = 64 * 1024  # characters of one rendered template (and of all its values together)
MAX_LOOP = 10_000  # loop iterations in one rendering, all loops together
MAX_ARGUMENT = 100_000  # an integer argument to a function or method (widths, counts)
MAX_INT_BITS = 4096

# Control characters other than tab and newline have no business in a command, URL or header, and
# U+001E / U+001F are the markers of values and secrets in rendered text.
_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F]) - {"\t", "\n"}

_FILTERS = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "first",
    "float",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "sum",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
)
_STATEMENTS = (nodes.Output, nodes.If, nodes.For, nodes.TemplateData)
_STATEMENT_NAMES = {"Assign": "set", "AssignBlock": "set", "FilterBlock": "filter", "CallBlock": "call"}
# str methods whose integer argument is a width: 'x'.ljust(10**9) allocates a gigabyte.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"})


def quote_word(value: str) -> str:
    """``value`` as one inert shell word. Like shlex.quote, but "=" is quoted too: an unquoted
    ``A=B`` at the start of a command is an assignment, and the next word becomes the command."""
    if "=" in value and value == shlex.quote(value):
        return "'" + value + "'"
    return shlex.quote(value)


class Raw(str):
    """A value the author marked as shell syntax: substituted without quoting or checks."""


class Quoted(str):
    """A value already shell-quoted (the ``quote`` filter): not quoted again, still position-checked."""


class SecretRef:
    """What ``secrets.NAME`` is inside a template. It refuses to become text: the only thing a template
    may do with it is insert it as it is, which renders a token."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        raise _SecretMisuse(self.name)

    def __repr__(self) -> str:
        return f"<secret {self.name}>"


class _SecretMisuse(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Refused(Exception):
    """A rule of this module refused the template; the message is the problem, ``expected`` the fix."""

    def __init__(self, problem: str, expected: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.expected = expected


def secrets_context(names: Iterable[str]) -> dict[str, SecretRef]:
    """The ``secrets`` namespace a template sees: one reference per declared secret."""
    return {name: SecretRef(name) for name in names}


# -- the sandbox


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise _Refused("the % operator on text is not supported", "join text with ~ or use a filter")
        if operator == "**" and _bits(right) and (right > 256 or _bits(left) * right > MAX_INT_BITS):
            raise _Refused(f"{left} ** {right} is too large a number", f"numbers below 2**{MAX_INT_BITS}")
        if operator == "*":
            if _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _Refused("a product too large a number", f"numbers below 2**{MAX_INT_BITS}")
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_RENDERED
                ):
                    raise _Refused(
                        f"repeating a value {times} times is too long", f"at most {MAX_RENDERED} characters"
                    )
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__orch_own__", False):
            return __obj(*args, **kwargs)
        if isinstance(getattr(__obj, "__self__", None), str) and __obj.__name__ in _WIDTH_METHODS:
            raise _Refused(
                f"the text method {__obj.__name__}() is not supported", "use the filters listed in the README"
            )
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_ARGUMENT:
                raise _Refused(f"the argument {arg} is too large", f"numbers up to {MAX_ARGUMENT} in calls")
        return super().call(__context, __obj, *args, **kwargs)


def _bounded_replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    grows = (len(new) - len(old)) * (text.count(old) if old else len(text) + 1)
    if len(text) + max(0, grows) > MAX_RENDERED:
        raise _Refused("replace() would make the text too long", f"at most {MAX_RENDERED} characters")
    return text.replace(old, new) if count is None else text.replace(old, new, count)


class _Own:
    """One of this module's own functions, called by the compiled template: trusted, not bounded."""

    __orch_own__ = True

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **_jinja_internals: Any) -> Any:  # e.g. _loop_vars
        return self.fn(*args)


def _make_env() -> _Sandbox:
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters = {name: env.filters[name] for name in _FILTERS}
    env.filters["replace"] = _bounded_replace
    env.filters["raw"] = Raw
    env.filters["quote"] = lambda v: Quoted(quote_word(str(v)))
    env.globals = {"range": env.globals["range"]}
    return env


_ENV = _make_env()


@dataclass(frozen=True)
class _Compiled:
    template: jinja2.Template
    blocks: tuple[str, ...]  # the source text of each `{{ }}`, in order
    secrets: frozenset[str]  # the secrets it names


def _statement(node: nodes.Node) -> str:
    kind = type(node).__name__
    return _STATEMENT_NAMES.get(kind, kind.lower())


def _secret_names(tree: nodes.Node) -> frozenset[str]:
    """The secrets a template names: ``secrets.NAME`` and ``secrets['NAME']``."""
    found: set[str] = set()
    for get in tree.find_all(nodes.Getattr):
        if isinstance(get.node, nodes.Name) and get.node.name == "secrets":
            found.add(get.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "secrets"
            and isinstance(item.arg, nodes.Const)
        ):
            found.add(str(item.arg.value))
    return frozenset(found)


def _reserved(node: nodes.Node) -> str | None:
    for name in node.find_all(nodes.Name):
        if name.name.startswith("_"):
            return name.name
    return None


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> _Compiled:
    """Parse, refuse what templates may not do, and wrap every `{{ expr }}` in a call that records its
    value (so values can be quoted, position-checked and named in errors) and every loop in a budget."""
    tree = _ENV.parse(source)
    for node in tree.body:
        for inner in [node, *node.find_all(nodes.Stmt)]:
            if not isinstance(inner, _STATEMENTS):
                raise _Refused(
                    f"the statement {{% {_statement(inner)} %}} is not supported in templates",
                    "only {% if %} and {% for %} blocks, and {{ values }}",
                )
    secrets = _secret_names(tree)
    reserved = _reserved(tree)
    if reserved:
        raise _Refused(f"the name {reserved!r} is reserved", "names that do not start with _")
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise _Refused("recursive loops are not supported", "a plain {% for %} loop")
        loop.iter = nodes.Call(nodes.Name("__orch_loop", "load"), [loop.iter], [], None, None)
    index = 0
    for output in tree.find_all(nodes.Output):
        wrapped: list[nodes.Expr] = []
        for child in output.nodes:
            if not isinstance(child, nodes.TemplateData):
                child = nodes.Call(
                    nodes.Name("__orch_value", "load"), [nodes.Const(index), child], [], None, None
                )
                index += 1
            wrapped.append(child)
        output.nodes = wrapped
    blocks: list[str] = []
    current: list[str] | None = None
    for _line, kind, value in _ENV.lex(source):
        if kind == "variable_begin":
            current = []
        elif kind == "variable_end" and current is not None:
            blocks.append("".join(current).strip())
            current = None
        elif current is not None:
            current.append(value)
    return _Compiled(_ENV.from_string(tree), tuple(blocks), secrets)


# -- rendering


@dataclass
class _Rendering:
    """One rendering's recorded values: what each mark in the text stands for."""

    shell: bool
    allow_secrets: bool
    blocks: tuple[str, ...]
    values: list[tuple[int, str]] = field(default_factory=list)  # (block index, text to put in)
    size: int = 0
    loops: int = 0

    def value(self, block: int, value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises here, naming what is undefined
        if isinstance(value, SecretRef):
            if not self.allow_secrets:
                raise _Refused(
                    f"{{{{ {self.blocks[block]} }}}} puts a secret where secrets may not go",
                    "secrets go only into commands, http check urls and headers",
                )
            return self._keep(block, token(value.name), mark=self.shell)
        if isinstance(value, Raw):
            text = _clean(str(value), self.blocks[block])
            if self.shell:
                self.size += len(text)
                return text  # inlined before the position check: raw text is shell syntax
            return self._keep(block, text, mark=False)
        text = _clean(str(value), self.blocks[block])
        if self.shell and not isinstance(value, Quoted):
            text = quote_word(text)
        return self._keep(block, text, mark=self.shell)

    def _keep(self, block: int, text: str, *, mark: bool) -> str:
        self.size += len(text)
        if self.size > MAX_RENDERED:
            raise _Refused("the rendered text is too long", f"at most {MAX_RENDERED} characters")
        if not mark:
            return text
        self.values.append((block, text))
        return shellwords.mark(len(self.values) - 1)

    def loop(self, iterable: Any) -> Iterator[Any]:
        for item in iterable:
            self.loops += 1
            if self.loops > MAX_LOOP:
                raise _Refused("loops run too many times", f"at most {MAX_LOOP} iterations in a template")
            yield item


def _clean(text: str, block: str) -> str:
    bad = next((c for c in text if c in _CONTROL), None)
    if bad is not None:
        raise _Refused(
            f"the value of {{{{ {block} }}}} holds the control character U+{ord(bad):04X}",
            "values without control characters (tab and newline are fine)",
        )
    return text


def _check_source(template: str) -> None:
    if len(template) > MAX_SOURCE:
        raise _Refused(f"the template is {len(template)} characters long", f"at most {MAX_SOURCE}")
    bad = next((c for c in template if c in _CONTROL), None)
    if bad is not None:
        raise _Refused(
            f"the template holds the control character U+{ord(bad):04X}",
            "text without control characters (tab and newline are fine)",
        )


def _position_check(text: str, rendering: _Rendering) -> str:
    for wrong in shellwords.misplaced(text):
        block = rendering.blocks[rendering.values[wrong.index][0]]
        raise _Refused(
            f"{{{{ {block} }}}} is {wrong.where}",
            f"write it where a word stands, without quotes around it (values are quoted for you), "
            f"or write {{{{ {block} | raw }}}} if it is meant as shell syntax",
        )
    out = []
    rest = text
    while shellwords.MARK in rest:
        before, _, after = rest.partition(shellwords.MARK)
        number, _, rest = after.partition(shellwords.MARK)
        out.append(before)
        out.append(rendering.values[int(number)][1])
    out.append(rest)
    return "".join(out)


def render(
    template: str, context: dict[str, Any], *, where: str, shell: bool, allow_secrets: bool = False
) -> str:
    """Render one template; ``where`` (FILE:LINE) goes into any error. Secrets render as tokens."""
    try:
        _check_source(template)
        compiled = _compile(template)
        declared = context.get("secrets") or {}
        unknown = sorted(compiled.secrets - set(declared))
        if unknown:
            raise _Refused(
                f"secret {unknown[0]!r} is not declared",
                "declare it under `secrets:` in the inventory or the playbook, as {env: VARIABLE} or "
                "{file: PATH}" + (f" (declared: {', '.join(sorted(declared))})" if declared else ""),
            )
        rendering = _Rendering(shell=shell, allow_secrets=allow_secrets, blocks=compiled.blocks)
        chunks: list[str] = []
        size = 0
        names = {"__orch_value": _Own(rendering.value), "__orch_loop": _Own(rendering.loop)}
        for chunk in compiled.template.generate({**context, **names}):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise _Refused("the rendered text is too long", f"at most {MAX_RENDERED} characters")
            chunks.append(chunk)
        text = "".join(chunks)
        return _position_check(text, rendering) if shell else text
    except _Refused as exc:
        raise InputError(where, exc.problem, exc.expected) from None
    except _SecretMisuse as exc:
        raise InputError(
            where,
            f"secrets.{exc.name} is transformed or tested in {template!r}; a secret can only be inserted "
            "as it is",
            f"write {{{{ secrets.{exc.name} }}}} on its own",
        ) from None
    except jinja2.UndefinedError as exc:
        raise InputError(
            where,
            f"template {template!r} uses an undefined name ({exc.message})",
            "define it under `vars` in the playbook or inventory (secrets under `secrets`), or fix the "
            "spelling",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(
            where, f"template syntax error in {template!r}: {exc.message}", "valid Jinja2"
        ) from None
    except jinja2.TemplateError as exc:
        raise InputError(where, f"template {template!r} failed: {exc}", "a valid template") from None
    except RecursionError:
        raise InputError(where, f"template {template!r} nests too deeply", "a simpler template") from None
    except Exception as exc:  # 1/0, [].pop(), int('x'): the template's own error, one line
        raise InputError(
            where, f"template {template!r} failed: {type(exc).__name__}: {exc}", "a template that renders"
        ) from None
