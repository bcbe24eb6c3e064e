"""Snapshots made by shell commands on the host itself (LVM, ZFS, btrfs, or a plain copy).

For servers that are not VMs, or whose hypervisor we may not reach. The commands come from the
inventory, already rendered with the snapshot name; their exit code is the verdict.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.adapters.remote.base import Remote
from orchestrator.errors import HypervisorError


class CommandSnapshots:
    def __init__(self, remote: Callable[[], Remote], commands: dict[str, str], *, timeout: float) -> None:
        self._remote = remote
        self._commands = commands
        self._timeout = timeout

    def _run(self, action: str, domain: str, name: str) -> None:
        command = self._commands[action]
        result = self._remote().run(command, timeout=self._timeout)
        if not result.ok:
            raise HypervisorError(
                f"snapshot {action} command for {domain} exited {result.exit_code}: {result.tail(2)}",
                domain=domain,
                snapshot=name,
            )

    def create(self, domain: str, name: str, *, memory: bool) -> None:
        self._run("create", domain, name)

    def revert(self, domain: str, name: str) -> None:
        self._run("revert", domain, name)

    def delete(self, domain: str, name: str) -> None:
        self._run("delete", domain, name)

    def list(self, domain: str) -> list[str]:
        return []  # command snapshots are not enumerable; the journal records what was made
