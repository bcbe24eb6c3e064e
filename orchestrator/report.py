"""What the CLI prints: the plan, live progress lines, the summary table."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

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
    for column in ("rollout", "name", "pool", "state", "batch", "started", "took", "reason"):
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


def rollout_detail(console: Console, store: Store, rollout: Rollout) -> None:
    console.print(rollouts_table(f"Rollout {rollout.id}", [rollout]))
    table = Table(title="hosts")
    for column in ("host", "batch", "state", "in state since", "now", "lease"):
        table.add_column(column)
    steps = store.steps(rollout.id)
    for host in store.hosts(rollout.id):
        mine = [s for s in steps if s.host == host.name]
        current = mine[-1] if mine else None
        p = host.progress
        note = p.get("blocked") or p.get("error") or p.get("detail") or (current.detail if current else "")
        doing = f"{current.step} ({current.outcome})" if current else "-"
        table.add_row(
            host.name,
            str(host.batch + 1),
            host.state.value,
            _ago(p.get("since") or None),
            f"{doing}: {note}"[:90],
            "held"
            if host.state not in (HostState.PENDING,) and current and current.outcome == "running"
            else "",
        )
    console.print(table)
    for at, action, actor, detail in store.actions(rollout.id):
        console.print(
            f"  {time.strftime('%H:%M:%S', time.localtime(at))} {action} by {actor}: {detail}", markup=False
        )


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
            f"[{STATE_STYLE.get(host.state, '')}]{host.state.value}",
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
