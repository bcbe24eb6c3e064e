"""Reading the user's files into a RolloutSpec, and the preflight that runs before anything changes."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.engine.wiring import Runtime
from orchestrator.errors import OrchestratorError, RolloutRefused
from orchestrator.model.inventory import load_inventory
from orchestrator.model.playbook import load_playbook
from orchestrator.model.resolve import Files, resolve
from orchestrator.model.spec import RolloutSpec


def new_rollout_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def load_spec(
    playbook: Path,
    inventory: Path,
    *,
    rollout_id: str = "ROLLOUT_ID",
    hosts: tuple[str, ...] = (),
    missing: list[str] | None = None,
) -> RolloutSpec:
    """Parse, validate and render everything; raises InputError (exit 2) on any user mistake. With
    ``missing``, upload sources that do not exist are listed there instead (for `plan`)."""
    book, book_lines = load_playbook(playbook)
    inv, inv_lines = load_inventory(inventory)
    files = Files(book_lines, inv_lines)
    return resolve(book, inv, files, rollout_id=rollout_id, only_hosts=hosts, missing=missing)


def preflight(spec: RolloutSpec, runtime: Runtime) -> list[str]:
    """Refuse to start unless the load balancer knows every server and every host answers over SSH
    with a known host key. Returns one line per host checked; raises RolloutRefused."""
    problems: list[str] = []
    lb = runtime.loadbalancer(spec.loadbalancer)
    try:
        known = {s.server: s for s in lb.servers()}
    except OrchestratorError as exc:
        raise RolloutRefused(f"preflight: load balancer unreachable: {exc}") from None
    for host in spec.hosts.values():
        if host.lb_server not in known:
            problems.append(
                f"{host.name}: backend {spec.loadbalancer.backend} has no server {host.lb_server!r}"
            )

    def ssh(name: str) -> str | None:
        host = spec.hosts[name]
        try:
            runtime.remotes.get(host)
        except OrchestratorError as exc:
            return f"{name}: {exc}"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        problems += [p for p in pool.map(ssh, spec.hosts) if p]
    if problems:
        raise RolloutRefused("preflight failed, nothing was changed:\n  " + "\n  ".join(problems))
    return [f"{h.name}: {known[h.lb_server].status}, ssh ok" for h in spec.hosts.values()]
