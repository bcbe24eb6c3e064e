"""Secrets, as the files and the stored rollout know them: a name and where its value lives, never the
value.

```yaml
secrets:                                   # in the inventory (top level or a pool) or the playbook
  db_password: {env: DXCARE_DB_PASSWORD}   # an environment variable of the worker
  api_token: {file: /run/secrets/dxcare}   # a file on the worker (relative: from the declaring file)
```

A template uses one as ``{{ secrets.db_password }}``. Rendering puts a *token* in its place (the name
between two U+001F characters, a control character that `validate` refuses anywhere in the input), so
the stored spec, `plan` and every label hold the token, shown as ``***``. Only the worker that runs a
command replaces tokens with values (``orchestrator.engine.secrets``), at the last moment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
SecretName = Annotated[str, Field(pattern=NAME_PATTERN)]
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

SEP = "\x1f"
TOKEN = re.compile(SEP + r"([A-Za-z_][A-Za-z0-9_]{0,63})" + SEP)
# A token inside a repr() (a message quoting a command with !r) shows its separator escaped.
_ANY_TOKEN = re.compile(r"(?:\x1f|\\x1f)([A-Za-z_][A-Za-z0-9_]{0,63})(?:\x1f|\\x1f)")
SHOWN = "***"


def token(name: str) -> str:
    return f"{SEP}{name}{SEP}"


def shown(text: str) -> str:
    """``text`` as people may see it: every secret token as ``***``."""
    return _ANY_TOKEN.sub(SHOWN, text) if SEP in text or "\\x1f" in text else text


def names_in(text: str) -> list[str]:
    return TOKEN.findall(text)


class SecretSource(BaseModel):
    """Where a secret's value lives. Exactly one of ``env`` and ``file``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Annotated[str, Field(pattern=ENV_PATTERN)] | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError(
                "a secret needs exactly one source; {env: VARIABLE} or {file: /run/secrets/NAME}"
            )
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env is not None else f"file {self.file}"


class SecretSpec(BaseModel):
    """A declared secret as the stored rollout keeps it: the source, and where it was declared (for
    the one-line error when the worker cannot read it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: SecretSource
    where: str
