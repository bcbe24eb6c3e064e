"""From the user's files to a rollout the workers run: load and resolve, preflight, store, enqueue."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from orchestrator.adapters.loadbalancers.haproxy_parse import hard_stop_after, server_state_keeping
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import OrchestratorError, RolloutRefused
from orchestrator.model.inventory import HAProxyConfig, load_inventory
from orchestrator.model.playbook import load_playbook
from orchestrator.model.resolve import Files, resolve
from orchestrator.model.spec import RolloutSpec


class Launcher(Protocol):
    """How a stored rollout is handed to the workers (a Celery message, or a direct call in tests)."""

    def start(self, rollout_id: str) -> None: ...


class RolloutCreator(Protocol):
    def create_rollout(self, spec: RolloutSpec, *, stale_after: float = 600.0) -> None: ...


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
    with a known host key. Returns one line per host checked, and one about HAProxy's reloads;
    raises RolloutRefused."""
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
    lines = [f"{h.name}: {known[h.lb_server].status}, ssh ok" for h in spec.hosts.values()]
    return [*lines, reload_keeping(spec.loadbalancer), *older_processes(spec.loadbalancer)]


REASSERTS = "the orchestrator re-asserts them anyway, within a poll"


def reload_keeping(config: HAProxyConfig) -> str:
    """One line: does a reload of this HAProxy keep the server states the rollout sets? A warning when
    it does not, or when there is no way to tell; never a refusal (the states are watched anyway)."""
    if config.config is None:
        return (
            "warning: cannot tell whether HAProxy keeps server states across reloads (no "
            f"loadbalancer.config in the inventory); {REASSERTS}"
        )
    try:
        text = config.config.read_text(errors="replace")
    except OSError as exc:
        return f"warning: cannot read loadbalancer.config {config.config} ({exc.strerror}); {REASSERTS}"
    keeping = server_state_keeping(text, config.backend)
    if keeping.kept:
        return f"loadbalancer: reloads keep server states ({keeping.why}; save them before each reload)"
    return (
        f"warning: {config.config}: a reload of HAProxy forgets the server states of backend "
        f"{config.backend} ({keeping.why}); {REASSERTS}"
    )


def older_processes(config: HAProxyConfig) -> list[str]:
    """One line, when the configuration can be read: how long an old HAProxy process may go on after a
    reload, routing the connections it kept with the server states it had (out of the runtime API's
    reach), and so how long a drain right after a reload waits for it."""
    try:
        text = config.config.read_text(errors="replace") if config.config else None
    except OSError:
        text = None  # reload_keeping's line says it cannot be read
    if text is None:
        return []
    bound = hard_stop_after(text)
    if bound is None:
        return [
            f"warning: {config.config}: no hard-stop-after in global: after a reload the old HAProxy "
            "process routes the connections it kept with the server states it had, for as long as they "
            "stay open, and a drain cannot wait for it; set one (e.g. hard-stop-after 30s)"
        ]
    return [
        f"loadbalancer: old processes stop {bound:g}s after a reload at the latest (hard-stop-after); "
        "a drain that follows a reload waits for them"
    ]


def submit(store: RolloutCreator, launcher: Launcher, spec: RolloutSpec, *, stale_after: float) -> str:
    """Store the rollout (taking its pool's lock, or refusing) and hand it to the workers."""
    store.create_rollout(spec, stale_after=stale_after)
    launcher.start(spec.rollout_id)
    return spec.rollout_id


def start_from_files(
    store: RolloutCreator,
    runtime: Runtime,
    launcher: Launcher,
    playbook: Path,
    inventory: Path,
    hosts: tuple[str, ...],
    *,
    stale_after: float,
) -> str:
    """What a schedule does when it comes due (inside a worker): validate again, preflight, submit."""
    spec = load_spec(playbook, inventory, rollout_id=new_rollout_id(), hosts=hosts)
    preflight(spec, runtime)
    return submit(store, launcher, spec, stale_after=stale_after)
