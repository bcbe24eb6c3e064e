"""Secret values, read by the worker at the moment a command, URL or header needs them.

The spec holds tokens (see ``model.secrets``); this replaces each token with its value in the form the
place needs: shell-quoted in a command, percent-encoded in a URL, as it is in a header. Every value read
is remembered by ``orchestrator.redact``, so nothing this process writes can carry it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote

from orchestrator import redact
from orchestrator.errors import InputError
from orchestrator.model.secrets import TOKEN, SecretSpec
from orchestrator.model.templating import quote_word

MAX_SECRET_BYTES = 64 * 1024


class SecretValues:
    def __init__(self, specs: Mapping[str, SecretSpec], env: Mapping[str, str] | None = None) -> None:
        self._specs = specs
        self._env = os.environ if env is None else env

    def require(self) -> None:
        """Read every secret now: a missing one fails before anything is touched."""
        for name in self._specs:
            self.value(name)

    def value(self, name: str) -> str:
        spec = self._specs.get(name)
        if spec is None:  # the spec lists every secret its templates use: a bug if not
            raise InputError("secrets", f"secret {name!r} is used but not declared", "declare it")
        source = spec.source
        if source.env is not None:
            value = self._env.get(source.env)
            if value is None:
                raise InputError(
                    spec.where,
                    f"secret {name}: environment variable {source.env} is not set for this worker",
                    f"set {source.env} in the environment of the process that runs the rollout",
                )
        else:
            assert source.file is not None
            value = _read(name, source.file, spec.where)
        if not value:
            raise InputError(spec.where, f"secret {name} ({source.describe()}) is empty", "a value")
        if len(value) < redact.MIN_LENGTH or "\x00" in value:
            raise InputError(
                spec.where,
                f"secret {name} ({source.describe()}) is shorter than {redact.MIN_LENGTH} characters or "
                "holds a NUL byte; such a value cannot be kept out of command output reliably",
                f"a value of at least {redact.MIN_LENGTH} characters",
            )
        redact.remember(value)
        return value

    def _put(self, text: str, encode: Callable[[str], str]) -> str:
        return TOKEN.sub(lambda m: encode(self.value(m.group(1))), text) if "\x1f" in text else text

    def shell(self, text: str) -> str:
        """A command with each secret as one shell-quoted word."""
        return self._put(text, quote_word)

    def url(self, text: str) -> str:
        return self._put(text, lambda v: quote(v, safe=""))

    def text(self, text: str) -> str:
        return self._put(text, lambda v: v)


def _read(name: str, path: Path, where: str) -> str:
    try:
        # Looked at before opening: opening a FIFO would wait for a writer.
        if not stat.S_ISREG(path.stat().st_mode):
            raise InputError(where, f"secret {name}: {path} is not a regular file", "a file")
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise InputError(
            where, f"secret {name}: file {path} does not exist on this worker", "create it"
        ) from None
    except OSError as exc:
        raise InputError(
            where, f"secret {name}: cannot read {path}: {exc.strerror}", "a readable file"
        ) from None
    if len(data) > MAX_SECRET_BYTES:
        raise InputError(
            where, f"secret {name}: {path} is larger than {MAX_SECRET_BYTES} bytes", "a smaller file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(where, f"secret {name}: {path} is not UTF-8 text", "a UTF-8 file") from None
    # Files written by `echo` or editors end with a newline that is not part of the secret.
    return text[:-1] if text.endswith("\n") else text


class NoSecrets(SecretValues):
    """For pipelines built without a spec's secrets (unit tests, single-host tools)."""

    def __init__(self) -> None:
        super().__init__({})
