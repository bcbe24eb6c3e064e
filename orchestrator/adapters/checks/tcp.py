"""TCP health check: the port accepts a connection."""

from __future__ import annotations

import socket

from orchestrator.adapters.checks.base import CheckResult


class TCPCheck:
    def __init__(self, address: str, port: int, *, name: str = "", timeout: float = 2.0) -> None:
        self.name = name or f"tcp {address}:{port}"
        self.address = address
        self.port = port
        self.timeout = timeout

    def probe(self) -> CheckResult:
        where = f"{self.address}:{self.port}"
        try:
            with socket.create_connection((self.address, self.port), timeout=self.timeout):
                return CheckResult(True, f"TCP {where} accepts connections")
        except ConnectionRefusedError:
            return CheckResult(False, f"connection refused to {where}")
        except TimeoutError:
            return CheckResult(False, f"no answer from {where} within {self.timeout:g} s")
        except OSError as exc:
            return CheckResult(False, f"cannot connect to {where}: {exc.strerror or exc}")
