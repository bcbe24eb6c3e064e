"""What the engine needs from a remote host: run a command, upload a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.results import CommandResult

__all__ = ["CommandResult", "Remote", "SSHTarget"]


@dataclass(frozen=True)
class SSHTarget:
    host: str  # inventory name, used in messages
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0


class Remote(Protocol):
    def run(self, command: str, *, timeout: float) -> CommandResult: ...
    def upload(self, local: Path, remote_path: str, *, mode: int | None = None) -> None: ...
    def close(self) -> None: ...
