"""What the engine needs from a hypervisor: named snapshots of a running VM."""

from __future__ import annotations

from typing import Protocol


class Snapshots(Protocol):
    def create(self, domain: str, name: str, *, memory: bool) -> None:
        """Create snapshot ``name``; if it already exists, reuse it (a retried step must not duplicate)."""

    def revert(self, domain: str, name: str) -> None: ...
    def delete(self, domain: str, name: str) -> None:
        """Delete snapshot ``name``; a missing snapshot is not an error."""

    def list(self, domain: str) -> list[str]: ...
