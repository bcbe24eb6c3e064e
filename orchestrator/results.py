"""A command's result, carried by the Remote port's answers and by the errors about it (as invoke's
Failure.result is): the message alone explains the failure, and nothing rebuilds it by hand."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int  # -1: no exit status (killed by a signal, cut off by a timeout)
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def digest(self) -> str:
        """SHA-256 of the whole output (stdout, a NUL, stderr): what the audit log keeps of it."""
        return hashlib.sha256(f"{self.stdout}\0{self.stderr}".encode()).hexdigest()

    def tail(self, lines: int = 5) -> str:
        """The last lines of output, for messages and the journal."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return "\n".join(text[-lines:])
