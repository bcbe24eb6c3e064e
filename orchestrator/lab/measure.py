"""Measuring a rollout from the client side: live load, capacity samples, and the negative control.

Shared by the demo, the end-to-end tests and the benchmark, so all three measure the same way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.checks.http import HTTPCheck
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.adapters.remote.ssh import SSHRemote
from orchestrator.app.submit import load_spec
from orchestrator.engine.wiring import ssh_target
from orchestrator.lab.load import CapacitySample, CapacitySampler, LoadGenerator, LoadReport


@dataclass
class Measured:
    load: LoadReport
    capacity: list[CapacitySample]
    seconds: float

    @property
    def min_in_service(self) -> int:
        return min(s.in_service for s in self.capacity)


@contextmanager
def under_load(
    url: str, lb_socket: Path, backend: str = "app", *, settle: float = 1.5
) -> Iterator[Callable[[], Measured]]:
    """Live traffic through HAProxy (slow requests, keep-alive sessions) and capacity sampled every
    100 ms, around the block; call the yielded function after the block for the figures."""
    lb = HAProxy(socket=lb_socket, backend=backend)
    load = LoadGenerator(
        url, keepalive_clients=4, fresh_clients=2, max_requests=4000, max_seconds=240, timeout=10
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


def naive_update(inventory: Path, playbook: Path) -> None:
    """The NEGATIVE CONTROL: the very same update steps, host by host, with no drain: the server stays
    in the pool while its app is replaced. Waits until each host answers its checks before the next."""
    spec = load_spec(playbook, inventory, rollout_id="control")
    for host in spec.hosts.values():
        remote = SSHRemote.connect(ssh_target(host))
        try:
            for step in host.steps:
                if step.kind == "upload":
                    assert step.src is not None
                    remote.upload(step.src, step.dest, mode=step.mode)
                else:
                    result = remote.run(step.command, timeout=step.timeout)
                    if not result.ok:
                        raise RuntimeError(f"control update failed on {host.name}: {result.tail()}")
        finally:
            remote.close()
        check = HTTPCheck(host.checks[0].url, json=host.checks[0].json_fields, timeout=2)
        deadline = time.monotonic() + 30
        while not check.probe().ok:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name} did not come back within 30 s after the naive update")
            time.sleep(0.1)
