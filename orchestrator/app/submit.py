"""From the user's files to a rollout the workers run: load and resolve, preflight, store, enqueue."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from orchestrator.adapters.loadbalancers.haproxy_parse import hard_stop_after, server_state_keeping
from orchestrator.display import printable
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import InputError, OrchestratorError, RolloutRefused
from orchestrator.model.inventory import HAProxyConfig, load_inventory
from orchestrator.model.playbook import load_playbook
from orchestrator.model.resolve import Files, resolve
from orchestrator.model.spec import ChangeRequest, Document, RolloutSpec
from orchestrator.redact import redact
from orchestrator.store.schedules import Schedule

# A change ticket reference as ticketing systems write them: CHG0012345, CHG-1234, OPS/2026/17, #42.
CHANGE_TICKET = re.compile(r"^[A-Za-z0-9#][A-Za-z0-9_.:/#-]{0,63}$")


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


def change_ticket(text: str | None) -> str | None:
    if text is None:
        return None
    if not CHANGE_TICKET.match(text):
        raise InputError(
            "--change",
            f"{printable(text[:80])!r} is not a change ticket reference",
            "up to 64 letters, digits and _ . : / # -, e.g. CHG-1234",
        )
    return text


def _document(path: Path) -> Document:
    data = path.read_bytes()  # loaded a moment ago by load_spec: a failure here is a race, not input
    return Document(
        path=str(path.resolve()),
        sha256=hashlib.sha256(data).hexdigest(),
        text=redact(data.decode("utf-8", errors="replace")),
    )


def with_request(
    spec: RolloutSpec,
    *,
    requested_by: str,
    change: str | None = None,
    reason: str = "",
    at: float | None = None,
) -> RolloutSpec:
    """The spec with who asked for it, why, under which ticket, and the files it was made from (their
    digests, and their text with every secret value this process knows masked)."""
    request = ChangeRequest(
        requested_by=requested_by,
        requested_at=time.time() if at is None else at,
        change_ticket=change,
        reason=reason or None,
        playbook=_document(spec.playbook_path),
        inventory=_document(spec.inventory_path),
    )
    return spec.model_copy(update={"request": request})


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
    due: Schedule,
    *,
    stale_after: float,
) -> str:
    """What a schedule does when it comes due (inside a worker): validate again, preflight, submit.
    The requester is who scheduled it."""
    spec = load_spec(due.playbook, due.inventory, rollout_id=new_rollout_id(), hosts=due.hosts)
    spec = with_request(
        spec, requested_by=due.created_by, change=due.change_ticket, reason=due.reason, at=due.created_at
    )
    preflight(spec, runtime)
    return submit(store, launcher, spec, stale_after=stale_after)
