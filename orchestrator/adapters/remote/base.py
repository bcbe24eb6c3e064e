"""What the engine needs from a remote host: run a command, upload a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SSHTarget:
    host: str  # inventory name, used in messages
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 5) -> str:
        """The last lines of output, for messages and the journal."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return "\n".join(text[-lines:])


class Remote(Protocol):
    def run(self, command: str, *, timeout: float) -> CommandResult: ...
    def upload(self, local: Path, remote_path: str, *, mode: int | None = None) -> None: ...
    def close(self) -> None: ...
