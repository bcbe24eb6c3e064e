"""What the CLI prints: the plan, live progress lines, the summary table."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.table import Table

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.errors import OrchestratorError
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import ROLLOUT_DONE, HostState, RolloutState
from orchestrator.store.db import HostStatus, Rollout, Step, Store


def plan_text(spec: RolloutSpec) -> str:
    lines = [
        f"Plan: {spec.name} on pool {spec.pool}: {len(spec.hosts)} hosts in {len(spec.batches)} batches "
        f"(on failure: {spec.on_failure})"
    ]
    for i, batch in enumerate(spec.batches, 1):
        lines.append(f"  batch {i}: {', '.join(batch)}")
    snapshot = (
        f"snapshot {spec.snapshot_name} ({'memory + disk' if spec.snapshot_memory else 'disk'}, "
        f"{spec.snapshot_retention.replace('_', ' ')})"
        if spec.snapshot_enabled
        else "no snapshot"
    )
    lines.append(
        f"Each host: drain (timeout {spec.drain_timeout:g}s, then {spec.drain_on_timeout}) -> maint -> "
        f"{snapshot} -> update -> checks until {spec.stabilize_successes} passes "
        f"{spec.stabilize_interval:g}s apart (timeout {spec.stabilize_timeout:g}s) -> ready -> "
        f"wait until the load balancer says UP"
    )
    if spec.snapshot_enabled:
        lines.append("On failure after the snapshot: revert -> old version checks -> ready -> UP -> halt")
    for host in spec.hosts.values():
        lines.append(
            f"  {host.name} ({host.address}, lb {spec.loadbalancer.backend}/{host.lb_server}, "
            f"domain {host.domain}):"
        )
        for n, step in enumerate(host.steps, 1):
            what = step.command if step.kind == "run" else f"upload {step.src} -> {step.dest}"
            lines.append(f"    {n}. {what}  (timeout {step.timeout:g}s)")
        for check in host.checks:
            lines.append(f"    check: {check.label}")
    return "\n".join(lines)


def step_line(step: Step) -> str:
    took = (step.ended_at or time.time()) - step.started_at
    mark = {"ok": "ok", "failed": "FAILED"}.get(step.outcome, step.outcome)
    return f"  {step.host:<10} {step.step:<12} {mark:<6} {took:7.2f}s  {step.detail}"


def watch(store: Store, rollout_id: str, emit: Callable[[str], None], *, interval: float = 0.1) -> Rollout:
    """Print each step as it ends, and each change of the rollout's state, until it is over."""
    shown: set[int] = set()
    last_state: tuple[RolloutState, str] | None = None
    while True:
        rollout = store.rollout(rollout_id)
        assert rollout is not None
        for step in store.steps(rollout_id):
            if step.ended_at is not None and step.id not in shown:
                shown.add(step.id)
                emit(step_line(step))
        if (rollout.state, rollout.reason) != last_state and rollout.state is RolloutState.PAUSED:
            emit(f"  PAUSED: {rollout.reason}")
        elif last_state and last_state[0] is RolloutState.PAUSED and rollout.state is RolloutState.RUNNING:
            emit("  running again")
        last_state = (rollout.state, rollout.reason)
        if rollout.state in ROLLOUT_DONE:
            return rollout
        time.sleep(interval)


def _ago(t: float | None) -> str:
    return "-" if t is None else f"{time.time() - t:.0f}s ago"


def rollouts_table(title: str, rollouts: list[Rollout]) -> Table:
    table = Table(title=title)
    # Ids are what operators paste into the next command: never cut them short.
    table.add_column("rollout", no_wrap=True, min_width=20)
    for column in ("name", "pool", "state", "batch", "started", "took", "reason"):
        table.add_column(column)
    for r in rollouts:
        took = ((r.finished_at or time.time()) - r.started_at) if r.started_at else 0.0
        table.add_row(
            r.id,
            r.name,
            r.pool,
            r.state.value,
            f"{min(r.current_batch + 1, len(r.spec.batches))}/{len(r.spec.batches)}",
            _ago(r.started_at),
            f"{took:.1f}s",
            r.reason[:80],
        )
    return table


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _capacity_line(rollout: Rollout, servers: Callable[[], list[ServerState]]) -> str:
    from orchestrator.model.plan import capacity_floor_of

    try:
        live = servers()
    except OrchestratorError as exc:
        return f"[bold red]load balancer unreachable[/]: {exc}"
    spec = rollout.spec
    in_service = sum(s.in_service for s in live)
    floor = capacity_floor_of(spec.min_healthy, spec.max_unavailable, len(live))
    style = "red" if in_service < max(floor, 1) else "green"
    out = ", ".join(f"{s.server} {s.status}" for s in live if not s.in_service) or "none"
    return f"[{style}]{in_service}/{len(live)} in service[/], floor {floor}; out of service: {out}"


def _window_line(rollout: Rollout) -> str:
    window = rollout.spec.window
    if window is None:
        return "none"
    parsed = window.parsed()
    at = datetime.now(UTC)
    if parsed.is_open(at):
        return f"open, {_elapsed(parsed.time_left(at).total_seconds())} left ({parsed.describe()})"
    return f"closed; opens {parsed.next_open(at):%Y-%m-%d %H:%M} UTC ({parsed.describe()})"


def _waiting_for(rollout: Rollout, hosts: list[HostStatus]) -> str:
    if rollout.state in ROLLOUT_DONE:
        return "nothing: the rollout is over"
    if rollout.state in (RolloutState.PAUSED, RolloutState.AWAITING_APPROVAL):
        return rollout.reason
    waits = [
        f"{h.name}: {h.progress.get('detail')}"
        for h in hosts
        if str(h.progress.get("detail", "")).startswith(("waiting", "load balancer"))
        or (h.state is HostState.DRAINING and h.progress.get("detail"))
    ]
    return "; ".join(waits) or "the hosts in flight"


def status_view(store: Store, rollout: Rollout, servers: Callable[[], list[ServerState]]) -> Group:
    """What an on-call engineer needs at a glance: each host's state and step, the batch, the pool's
    capacity against its floor, the window, and what the rollout waits for."""
    hosts = store.hosts(rollout.id)
    steps = store.steps(rollout.id)
    took = (rollout.finished_at or time.time()) - (rollout.started_at or rollout.created_at)
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("rollout", f"{rollout.id} {rollout.name} on pool {rollout.pool}")
    header.add_row(
        "state",
        f"[bold]{rollout.state.value}[/] after {_elapsed(took)}"
        + (f": {rollout.reason}" if rollout.reason else ""),
    )
    header.add_row(
        "batch",
        f"{min(rollout.current_batch + 1, len(rollout.spec.batches))} of "
        f"{max(h.batch for h in hosts) + 1 if hosts else 0}",
    )
    header.add_row("capacity", _capacity_line(rollout, servers))
    header.add_row("window", _window_line(rollout))
    header.add_row("waiting for", _waiting_for(rollout, hosts))
    table = Table()
    for column in ("host", "batch", "state", "step", "for", "note"):
        table.add_column(column)
    for host in hosts:
        mine = [s for s in steps if s.host == host.name]
        current = mine[-1] if mine else None
        p = host.progress
        note = p.get("blocked") or p.get("error") or p.get("detail") or (current.detail if current else "")
        since = float(p.get("since") or 0) or (current.started_at if current else 0)
        table.add_row(
            host.name,
            str(host.batch + 1),
            f"[{STATE_STYLE.get(host.state, 'default')}]{host.state.value}",
            f"{current.step} ({current.outcome})" if current else "-",
            _elapsed(time.time() - since) if since and host.state not in (HostState.PENDING,) else "",
            str(note)[:300],
        )
    actions = Table.grid()
    for at, action, actor, detail in store.actions(rollout.id)[-8:]:
        actions.add_row(f"{time.strftime('%H:%M:%S', time.localtime(at))} {action} by {actor}: {detail}")
    return Group(header, table, actions)


STATE_STYLE = {
    HostState.SUCCEEDED: "green",
    HostState.ROLLED_BACK: "yellow",
    HostState.FAILED: "yellow",
    HostState.FAILED_OUT: "bold red",
    HostState.SKIPPED: "dim",
}


def summary(console: Console, rollout: Rollout, hosts: list[HostStatus], steps: list[Step]) -> None:
    table = Table(title=f"Rollout {rollout.id} ({rollout.name}, pool {rollout.pool})")
    for column in ("host", "batch", "result", "steps (seconds)", "note"):
        table.add_column(column)
    for host in hosts:
        mine = [s for s in steps if s.host == host.name and s.ended_at is not None]
        timing = " ".join(f"{s.step}={s.ended_at - s.started_at:.2f}" for s in mine if s.ended_at)
        note = str(host.progress.get("error", ""))
        table.add_row(
            host.name,
            str(host.batch + 1),
            f"[{STATE_STYLE.get(host.state, 'default')}]{host.state.value}",
            timing,
            note,
        )
    console.print(table)
    took = (rollout.finished_at or time.time()) - (rollout.started_at or rollout.created_at)
    style = "green" if rollout.state is RolloutState.SUCCEEDED else "bold red"
    console.print(f"[{style}]{rollout.state.value}[/] in {took:.1f}s: {rollout.reason}")
    out = [h.name for h in hosts if h.state is HostState.FAILED_OUT]
    if out:
        console.print(
            f"[bold red]ATTENTION: {', '.join(out)} left OUT of the load balancer pool; "
            "fix and return by hand[/]"
        )
