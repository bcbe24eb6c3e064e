"""What the CLI prints: the plan, live progress lines, the summary table."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, RolloutState
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
    """Print each step as it ends until the rollout is over; returns its final record."""
    shown: set[int] = set()
    while True:
        rollout = store.rollout(rollout_id)
        assert rollout is not None
        for step in store.steps(rollout_id):
            if step.ended_at is not None and step.id not in shown:
                shown.add(step.id)
                emit(step_line(step))
        if rollout.state in (RolloutState.SUCCEEDED, RolloutState.HALTED, RolloutState.FAILED):
            return rollout
        time.sleep(interval)


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
