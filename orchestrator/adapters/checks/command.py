"""Command health check: a command run on the host over the Remote succeeds (exit code 0)."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.adapters.checks.base import CheckResult
from orchestrator.adapters.remote.base import Remote
from orchestrator.errors import CommandTimeout, HostKeyError, RemoteError


class RemoteCommandCheck:
    def __init__(
        self,
        remote: Remote | Callable[[], Remote],
        command: str,
        *,
        name: str = "",
        timeout: float = 10.0,
    ) -> None:
        """remote: a Remote, or a function returning one (e.g. lambda: pool.get(target)), called per probe
        so that a probe after a reconnect uses the live connection."""
        self.name = name or f"command {command}"
        self.command = command
        self.timeout = timeout
        self._remote = remote

    def probe(self) -> CheckResult:
        try:
            remote = self._remote() if callable(self._remote) else self._remote
            result = remote.run(self.command, timeout=self.timeout)
        except HostKeyError:
            raise  # a security problem, not an unhealthy host
        except CommandTimeout:
            return CheckResult(False, f"{self.command!r} did not finish within {self.timeout:g} s")
        except RemoteError as exc:
            return CheckResult(False, _one_line(f"ssh failed: {exc}"))
        last = result.tail(1)
        detail = f"exit {result.exit_code}" + (f": {last}" if last else "")
        return CheckResult(result.ok, _one_line(detail))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
