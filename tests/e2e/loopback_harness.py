"""What the loopback end-to-end tests share: the CLI as a user runs it, the load, the negative control."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.checks.http import HTTPCheck
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.adapters.remote.ssh import SSHRemote
from orchestrator.inputs import load_spec
from orchestrator.lab.load import CapacitySample, CapacitySampler, LoadGenerator, LoadReport
from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.model.inventory import HAProxyConfig

ORCHESTRATOR = [sys.executable, "-m", "orchestrator"]


def cli(args: list[str], env: dict[str, str], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCHESTRATOR, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Measured:
    load: LoadReport
    capacity: list[CapacitySample]
    seconds: float

    @property
    def min_in_service(self) -> int:
        return min(s.in_service for s in self.capacity)


@contextmanager
def under_load(farm: LoopbackFarm, *, settle: float = 1.5) -> Iterator[Callable[[], Measured]]:
    """Live traffic through HAProxy (slow requests, keep-alive sessions) and capacity sampled every
    100 ms, around the block; call the yielded function after the block for the figures."""
    lb = HAProxy(HAProxyConfig(socket=farm.haproxy.socket_path, backend="app"))
    load = LoadGenerator(
        farm.url, keepalive_clients=4, fresh_clients=2, max_requests=4000, max_seconds=240, timeout=10
    )
    sampler = CapacitySampler(lb.servers, interval=0.1, max_seconds=240)
    result: list[Measured] = []
    load.set_phase("before")
    load.start()
    sampler.start()
    time.sleep(settle)
    load.set_phase("during")
    started = time.monotonic()
    try:
        yield lambda: result[0]
    finally:
        seconds = time.monotonic() - started
        load.set_phase("after")
        time.sleep(settle)
        result.append(Measured(load.stop(), sampler.stop(), seconds))


def naive_update(farm: LoopbackFarm, playbook: Path) -> None:
    """The NEGATIVE CONTROL: the very same update steps, host by host, with no drain: the server stays
    in the pool while its app is replaced. Waits until each host answers its checks before the next."""
    spec = load_spec(playbook, farm.inventory, rollout_id="control")
    for host in spec.hosts.values():
        remote = SSHRemote.connect(host.ssh.target(host.name))
        try:
            for step in host.steps:
                if step.kind == "upload":
                    assert step.src is not None
                    remote.upload(step.src, step.dest, mode=step.mode)
                else:
                    result = remote.run(step.command, timeout=step.timeout)
                    assert result.ok, result
        finally:
            remote.close()
        check = HTTPCheck(host.checks[0].url, json=host.checks[0].json_fields, timeout=2)
        deadline = time.monotonic() + 30
        while not check.probe().ok:
            assert time.monotonic() < deadline, f"{host.name} did not come back after the naive update"
            time.sleep(0.1)
