"""One exception tree for the whole orchestrator.

    OrchestratorError
    ├── InputError            bad playbook / inventory / argument: FILE:LINE: what; expected (exit 2)
    ├── ConfigError           bad settings or environment (exit 2)
    ├── AdapterError          a real system answered badly; carries what we talked to
    │   ├── LoadBalancerError     HAProxy runtime API (socket, unknown server, refused command)
    │   ├── HypervisorError       libvirt (domain, snapshot named)
    │   ├── RemoteError           SSH (host named; ``result`` once a command ran)
    │   │   ├── HostKeyError          unknown or changed host key: never auto-accepted
    │   │   ├── CommandTimeout        a remote command outlived its timeout (``result``: its output so far)
    │   │   └── CommandFailed         a command ran and exited non-zero (``result``)
    │   └── CheckError            a health check could not even be run (not "unhealthy")
    ├── StoreUnavailable      the store does not answer (down, failing over, disk full): wait (exit 3)
    ├── StateError            an illegal host or rollout state transition
    └── RolloutRefused        the rollout may not start (preflight, lock)

Errors flagged ``transient`` (a refused connection, a reset) are what the retry policy in
``orchestrator.retry`` may retry; everything else fails the step at once.
"""

from __future__ import annotations

from orchestrator.results import CommandResult


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    exit_code = 1
    transient = False


class InputError(OrchestratorError):
    """A user mistake in a file or argument. The message alone must say where and how to fix it."""

    exit_code = 2

    def __init__(self, where: str, problem: str, expected: str = "") -> None:
        self.where = where
        self.problem = problem
        self.expected = expected
        text = f"{where}: {problem}"
        if expected:
            text += f"; {expected}"
        super().__init__(text)


class ConfigError(OrchestratorError):
    exit_code = 2


class AdapterError(OrchestratorError):
    """A real system (load balancer, hypervisor, host) failed us."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class LoadBalancerError(AdapterError):
    pass


class HypervisorError(AdapterError):
    def __init__(
        self,
        message: str,
        *,
        domain: str,
        snapshot: str = "",
        transient: bool = False,
        unanswered: bool = False,
    ) -> None:
        super().__init__(message, transient=transient)
        self.domain = domain
        self.snapshot = snapshot
        # The hypervisor did not answer (stopped, hung, its connection lost): the host waits for it, or
        # is put back; an answer that refused is a plain failure.
        self.unanswered = unanswered


class RemoteError(AdapterError):
    def __init__(
        self, message: str, *, host: str, transient: bool = False, result: CommandResult | None = None
    ) -> None:
        super().__init__(message, transient=transient)
        self.host = host
        self.result = result  # what the command printed (and its exit code) when it ran at all


class HostKeyError(RemoteError):
    pass


class CommandTimeout(RemoteError):
    pass


class CommandFailed(RemoteError):
    """A command ran to its end and exited non-zero. The message names it, the code and the last line."""

    def __init__(self, what: str, result: CommandResult, *, host: str) -> None:
        last = result.tail(1)
        super().__init__(
            f"{what} exited {result.exit_code}" + (f": {last}" if last else ""), host=host, result=result
        )


class CheckError(AdapterError):
    pass


class StoreUnavailable(OrchestratorError):
    """The store does not answer now: a lost or refused connection, a server restarting or failing over
    (answering read-only), a lock or serialization timeout, SQLite's disk full or file read-only. Not a
    bug and not the user's input: the engine waits it out within its outage budget."""

    exit_code = 3
    transient = True


class StateError(OrchestratorError):
    pass


class RolloutRefused(OrchestratorError):
    exit_code = 3


class Superseded(Exception):
    """This tick's chain is no longer the host's: a newer tick (a restart by the reconciler or `resume`)
    or another worker holds it. The tick stops at once, writing nothing more."""
