"""Helpers for the operator-control tests (tests/e2e/test_operator_controls.py): the CLI as real processes,
bounded waits, per-test settings, playbooks derived from loopback-v2.yaml, a watcher of every server's state
in HAProxy, and the store seen from the test."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.errors import LoadBalancerError
from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.model.records import Rollout, Step
from orchestrator.model.states import ROLLOUT_DONE, HostState, RolloutState
from orchestrator.store.db import Store
from tests.e2e.fault_helpers import Proc, cleanup, orchestrator
from tests.e2e.fault_helpers import cli as cli  # re-exported for the tests
from tests.e2e.fault_helpers import wait_for as wait_for

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def report(title: str, text: str) -> None:
    """Figures go to the real stdout whatever pytest captures."""
    out = sys.__stdout__
    assert out is not None
    out.write(f"\n[controls: {title}] {text}\n")
    out.flush()


def stopping() -> contextlib.AbstractContextManager[list[Proc]]:
    """Every process appended to the yielded list is stopped at the end, whatever happened (these tests
    run without a broker, so there is no queue to remove)."""
    return cleanup({})


def controls_env(tmp_path: Path, name: str) -> dict[str, str]:
    """One test's own store and queue; no broker, so `run` works with its in-process worker and an
    operator command from another process only changes the store (the reconciler, every 0.5 s here,
    carries it out)."""
    return {
        "ORCH_HOME": str(tmp_path / "home"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'orch.db'}",
        "ORCH_BROKER_URL": "",
        "ORCH_QUEUE": f"controls-{name}-{os.getpid()}-{time.time_ns()}",
        "ORCH_RECONCILE_EVERY": "0.5",
    }


def write_playbook(
    tmp_path: Path,
    name: str,
    *,
    steps_before: list[dict[str, Any]] | None = None,
    step_timeout: str | None = None,
    artifact_var: bool = False,
    **changes: Any,
) -> Path:
    """loopback-v2.yaml with top-level keys replaced by ``changes``, ``step_timeout`` on each of its own
    update steps, ``steps_before`` put in front of them, and (``artifact_var``) the artifact named by each
    host's ``vars.artifact``."""
    data = yaml.safe_load((PLAYBOOKS / "loopback-v2.yaml").read_text())
    data["name"] = f"loopback-{name}"
    data.update(changes)
    if step_timeout is not None:
        for step in data["update"]:
            step["timeout"] = step_timeout
    data["update"] = [*(steps_before or []), *data["update"]]
    if artifact_var:
        upload = data["update"][len(steps_before or [])]["upload"]
        assert upload["src"] == "{{ vars.files }}/app-2.tar.gz", upload
        upload["src"] = "{{ vars.files }}/{{ vars.artifact }}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def set_host_vars(farm: LoopbackFarm, per_host: dict[str, dict[str, Any]], **every: Any) -> None:
    """Add vars to the farm's inventory: ``every`` for each host, then ``per_host`` on top."""
    inventory = farm.inventory_data()
    hosts = inventory["pools"]["loopback"]["hosts"]  # type: ignore[index]
    for name, host in hosts.items():
        host["vars"].update(every)
        host["vars"].update(per_host.get(name, {}))
    farm.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))


def start_run(playbook: Path, farm: LoopbackFarm, env: dict[str, str], tmp_path: Path) -> Proc:
    return orchestrator(["run", str(playbook), "-i", str(farm.inventory)], env, tmp_path / "run.log")


def lb(farm: LoopbackFarm) -> HAProxy:
    return HAProxy(socket=farm.haproxy.socket_path, backend="app")


def all_up(farm: LoopbackFarm) -> list[ServerState] | None:
    """Every server of the pool plain UP (a check passed), or None."""
    try:
        found = lb(farm).servers()
    except LoadBalancerError:
        return None
    return found if found and all(s.up_after_check for s in found) else None


@dataclass(frozen=True)
class Sample:
    t: float  # time.time(), to compare with the store's times
    servers: dict[str, str]  # server -> "ready UP", "drain UP", "maint MAINT"...
    in_service: frozenset[str]


class ServerWatch:
    """Every server's state in HAProxy, read every 100 ms in a thread (bounded by ``max_seconds``)."""

    def __init__(self, farm: LoopbackFarm, max_seconds: float = 300.0) -> None:
        self._lb = lb(farm)
        self._max = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        deadline = time.monotonic() + self._max
        while time.monotonic() < deadline:
            t = time.time()
            try:
                found = self._lb.servers()
            except Exception:  # a gap in the record; counted and shown in the figures
                self.errors += 1
            else:
                sample = Sample(
                    t,
                    {s.server: f"{s.admin.value} {s.status}" for s in found},
                    frozenset(s.server for s in found if s.in_service),
                )
                with self._lock:
                    self._samples.append(sample)
            if self._stop.wait(0.1):
                return

    def samples(self, since: float = 0.0, until: float = float("inf")) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if since <= s.t <= until]

    def out_of_service(self, names: set[str], since: float = 0.0, until: float = float("inf")) -> list[str]:
        """Samples in which any of ``names`` did not take traffic, described."""
        return [
            f"t={s.t - since:.1f}s {s.servers}"
            for s in self.samples(since, until)
            if not names <= s.in_service
        ]

    def min_in_service(self) -> int:
        samples = self.samples()
        assert samples, f"no sample of HAProxy's servers ({self.errors} reads failed)"
        return min(len(s.in_service) for s in samples)

    def ever_out(self) -> set[str]:
        """Servers seen out of service at least once."""
        out: set[str] = set()
        for s in self.samples():
            out |= set(s.servers) - s.in_service
        return out


# The store, seen from the test


def the_rollout(store: Store, timeout: float = 30) -> Rollout:
    rollouts = wait_for(store.rollouts, timeout, "the rollout to be stored")
    assert len(rollouts) == 1, [r.id for r in rollouts]
    return rollouts[0]


def rollout_of(store: Store, rollout_id: str) -> Rollout:
    rollout = store.rollout(rollout_id)
    assert rollout is not None, rollout_id
    return rollout


def wait_rollout(
    store: Store, rollout_id: str, states: set[RolloutState], timeout: float, what: str = ""
) -> Rollout:
    def reached() -> Rollout | None:
        rollout = rollout_of(store, rollout_id)
        if rollout.state in states:
            return rollout
        if rollout.state in ROLLOUT_DONE:  # finished elsewhere: fail now, naming where it ended
            raise AssertionError(f"rollout ended {rollout.state.value} ({rollout.reason}) waiting for {what}")
        return None

    names = "/".join(sorted(s.value for s in states))
    return wait_for(reached, timeout, what or f"the rollout to be {names}", 0.1)


def host_states(store: Store, rollout_id: str) -> dict[str, HostState]:
    return {h.name: h.state for h in store.hosts(rollout_id)}


def state_text(store: Store, rollout_id: str) -> str:
    return ", ".join(f"{n} {s.value}" for n, s in host_states(store, rollout_id).items())


def journal_of(store: Store, rollout_id: str, host: str) -> list[Step]:
    return [s for s in store.steps(rollout_id) if s.host == host]


def journal_text(steps: list[Step]) -> str:
    return "; ".join(f"{s.host} {s.step} {s.outcome}" for s in steps)


def actions_text(store: Store, rollout_id: str) -> str:
    return "; ".join(
        f"{action} by {actor} ({detail})" for _, action, actor, detail in store.actions(rollout_id)
    )


def versions(farm: LoopbackFarm) -> dict[str, str]:
    """Each host's version as its own appctl reports it: '1', '2', or what went wrong."""
    result = {}
    for name, text in farm.versions().items():
        marker = "version "
        result[name] = text.split(marker, 1)[1].split(")", 1)[0] if marker in text else text
    return result


def hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


@dataclass(frozen=True)
class WindowPlan:
    """A UTC window open from the current minute until ``closes`` (a minute boundary), shut for one
    minute, then open again from ``reopens`` for ten minutes; ``launch`` is when to start the rollout so
    that its first host sees ``lead`` seconds left."""

    launch: float
    closes: float
    reopens: float
    allowed: list[str]


def plan_window(now: float, lead: float) -> WindowPlan:
    closes = math.ceil((now + lead + 1.0) / 60.0) * 60.0
    reopens = closes + 60.0
    opened = math.floor(now / 60.0) * 60.0
    allowed = [f"daily {hhmm(opened)}-{hhmm(closes)}", f"daily {hhmm(reopens)}-{hhmm(reopens + 600)}"]
    return WindowPlan(launch=closes - lead, closes=closes, reopens=reopens, allowed=allowed)
