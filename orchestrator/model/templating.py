"""Templates in playbooks: `{{ host.address }}`, `{{ vars.version }}`.

Undefined names are errors (StrictUndefined), found at `validate` time. In shell commands every
substituted value is shell-quoted automatically, so a variable holding `1; rm -rf /` stays one harmless
argument; `{{ x | raw }}` opts out, for values that are meant to be shell syntax.
"""

from __future__ import annotations

import shlex
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from orchestrator.errors import InputError


class Raw(str):
    """A value the author marked as shell syntax: substituted without quoting."""


def _quote(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    return shlex.quote(str(value))


def _make(finalize: Any) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=finalize
    )
    env.filters["raw"] = Raw
    env.filters["quote"] = lambda v: Raw(shlex.quote(str(v)))
    return env


_SHELL = _make(_quote)
_TEXT = _make(None)


def render(template: str, context: dict[str, Any], *, where: str, shell: bool) -> str:
    """Render one template; ``where`` (FILE:LINE) goes into any error."""
    env = _SHELL if shell else _TEXT
    try:
        return env.from_string(template).render(context)
    except jinja2.UndefinedError as exc:
        raise InputError(
            where,
            f"template {template!r} uses an undefined name ({exc.message})",
            "define it under `vars` in the playbook or inventory, or fix the spelling",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(
            where, f"template syntax error in {template!r}: {exc.message}", "valid Jinja2"
        ) from None
    except jinja2.TemplateError as exc:
        raise InputError(where, f"template {template!r} failed: {exc}", "a valid template") from None
