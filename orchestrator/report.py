"""What the CLI prints: the plan, live progress lines, the summary table."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from orchestrator.adapters.loadbalancers.base import ServerState
from orchestrator.display import printable
from orchestrator.engine.rollout.capacity import pool_picture
from orchestrator.errors import OrchestratorError
from orchestrator.model.records import HostStatus, Rollout, Step
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec
from orchestrator.model.states import ROLLOUT_DONE, HostState, RolloutState
from orchestrator.store.db import Store


def _check_text(check: CheckSpec) -> str:
    parts = [check.label, f"timeout {check.timeout:g}s"]
    if check.kind == "http":
        parts.insert(1, f"status {check.status}")
        if check.contains is not None:
            parts.insert(2, f"body contains {check.contains!r}")
        if check.json_fields:
            parts.insert(2, "json " + ", ".join(f"{k}={v!r}" for k, v in check.json_fields.items()))
        if check.headers:
            parts.insert(2, "headers " + ", ".join(f"{k}: {v}" for k, v in check.headers.items()))
    return ", ".join(parts)


def _strategy_lines(spec: RolloutSpec) -> list[str]:
    lines = []
    capacity = []
    if spec.max_unavailable is not None:
        capacity.append(f"max_unavailable {spec.max_unavailable}")
    if spec.min_healthy is not None:
        capacity.append(f"min_healthy {spec.min_healthy}")
    if capacity:
        lines.append(
            f"Capacity: {', '.join(capacity)} (a host waits up to {spec.capacity_timeout:g}s for it)"
        )
    budget = spec.failure_budget
    lines.append(f"Failures tolerated: {budget.count} (and at most {budget.percent} of the hosts)")
    if spec.approve_after:
        lines.append(
            f"Approval needed after batch {', '.join(map(str, spec.approve_after))} (after "
            f"{spec.approval_timeout:g}s without one: {spec.on_approval_timeout})"
        )
    deadlines = [
        f"{k} {v:g}s" for k, v in (("host", spec.deadlines.host), ("rollout", spec.deadlines.rollout)) if v
    ]
    if deadlines:
        lines.append(f"Deadlines: {', '.join(deadlines)}")
    if spec.window is not None:
        window = spec.window.parsed()
        longest = window.longest_opening().total_seconds() / 60
        lines.append(f"Window: {window.describe()} (longest opening {longest:g} min)")
    if spec.secrets:
        lines.append("Secrets (read by the worker when needed, shown as ***):")
        lines += [f"  {s.name}: {s.source.describe()} (declared at {s.where})" for s in spec.secrets.values()]
    return lines


def _host_lines(spec: RolloutSpec, host: HostSpec) -> list[str]:
    lb = f"{spec.loadbalancer.backend}/{host.lb_server}"
    lines = [f"  {host.name} ({host.address}, lb {lb}, domain {host.domain}):"]
    if spec.snapshot_enabled:
        lines.append(f"    snapshot: {host.snapshot_name}")
        for action, command in host.snapshot_commands.items():
            lines.append(f"    snapshot {action}: {command}")
    if host.session_probe:
        lines.append(f"    user sessions probe: {host.session_probe}")
    if host.session_warn:
        lines.append(f"    user sessions warning: {host.session_warn}")
    for n, step in enumerate(host.steps, 1):
        if step.kind == "run":
            what = step.command
        else:
            mode = f", mode {step.mode:04o}" if step.mode is not None else ""
            what = f"upload {step.src} -> {step.dest}{mode}"
        lines.append(f"    {n}. {what}  (timeout {step.timeout:g}s)")
    lines += [f"    check: {_check_text(check)}" for check in host.checks]
    if spec.snapshot_enabled:
        lines += [f"    after a revert, check: {_check_text(check)}" for check in host.revert_checks]
    return lines


def plan_text(spec: RolloutSpec, missing: list[str] | None = None) -> str:
    """Everything the rollout will do, in full: every command of every host, with secrets as *** and
    control characters escaped. ``missing``: upload sources that do not exist yet."""
    lines = [
        f"Plan: {spec.name} on pool {spec.pool}: {len(spec.hosts)} hosts in {len(spec.batches)} batches "
        f"(on failure: {spec.on_failure})"
    ]
    for i, batch in enumerate(spec.batches, 1):
        lines.append(f"  batch {i}: {', '.join(batch)}")
    lines += _strategy_lines(spec)
    snapshot = (
        f"snapshot ({'memory + disk' if spec.snapshot_memory else 'disk'}, "
        f"{spec.snapshot_retention.replace('_', ' ')})"
        if spec.snapshot_enabled
        else "no snapshot"
    )
    sessions = ""
    if spec.sessions is not None:
        s = spec.sessions
        sessions = (
            f", until no user session is left (probe every {s.interval:g}s"
            + (f", warning every {s.warn_every:g}s" if s.warn else "")
            + f"; at the timeout: {s.on_timeout})"
        )
    drain = f"drain (timeout {spec.drain_timeout:g}s{sessions}, then {spec.drain_on_timeout})"
    lines.append(
        f"Each host: {drain} -> maint -> {snapshot} -> update -> "
        f"checks until {spec.stabilize_successes} passes "
        f"{spec.stabilize_interval:g}s apart (timeout {spec.stabilize_timeout:g}s) -> ready -> "
        f"wait until the load balancer says UP"
    )
    if spec.snapshot_enabled:
        lines.append(
            f"On failure after the snapshot: revert -> old version checks -> ready -> UP -> {spec.on_failure}"
        )
    if missing:
        lines.append("Missing upload sources (validate and run refuse until they exist):")
        lines += [f"  {path}" for path in missing]
    for host in spec.hosts.values():
        lines += _host_lines(spec, host)
    return "\n".join(printable(line) for line in lines)


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
            _text(r.id),
            _text(r.name),
            _text(r.pool),
            r.state.value,
            f"{min(r.current_batch + 1, len(r.spec.batches))}/{len(r.spec.batches)}",
            _ago(r.started_at),
            f"{took:.1f}s",
            _text(printable(r.reason)[:80]),
        )
    return table


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _text(value: object, style: str = "") -> Text:
    """Data as a Rich cell: never read as markup, secrets and control characters made printable."""
    return Text(printable(value), style=style)


def _capacity_line(rollout: Rollout, servers: Callable[[], list[ServerState]]) -> Text:
    try:
        capacity = pool_picture(servers(), rollout.spec)
    except OrchestratorError as exc:
        return Text.assemble(("load balancer unreachable", "bold red"), ": ", printable(exc))
    style = "red" if capacity.below_floor else "green"
    out = ", ".join(capacity.out) or "none"
    return Text.assemble(
        (f"{capacity.in_service}/{capacity.servers} in service", style),
        printable(f", floor {capacity.floor}; out of service: {out}"),
    )


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
    waits = []
    for h in hosts:
        p = h.progress
        why = p.blocked or (
            f"waiting for {p.held_why}" if p.held_why and h.state is HostState.PENDING else ""
        )
        why = why or (p.detail if h.state is HostState.DRAINING else "")
        if why:
            waits.append(f"{h.name}: {why}")
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
    header.add_row("rollout", _text(f"{rollout.id} {rollout.name} on pool {rollout.pool}"))
    header.add_row(
        "state",
        Text.assemble(
            (rollout.state.value, "bold"),
            (f" ({rollout.pause_cause.value})" if rollout.pause_cause else "", "bold"),
            printable(f" after {_elapsed(took)}" + (f": {rollout.reason}" if rollout.reason else "")),
        ),
    )
    header.add_row(
        "batch",
        f"{min(rollout.current_batch + 1, len(rollout.spec.batches))} of "
        f"{max(h.batch for h in hosts) + 1 if hosts else 0}",
    )
    header.add_row("capacity", _capacity_line(rollout, servers))
    header.add_row("window", _text(_window_line(rollout)))
    header.add_row("waiting for", _text(_waiting_for(rollout, hosts)))
    table = Table()
    for column in ("host", "batch", "state", "step", "for", "note"):
        table.add_column(column)
    for host in hosts:
        mine = [s for s in steps if s.host == host.name]
        current = mine[-1] if mine else None
        p = host.progress
        note = p.blocked or p.error or p.detail or (current.detail if current else "")
        since = p.since or (current.started_at if current else 0)
        table.add_row(
            _text(host.name),
            str(host.batch + 1),
            _text(host.state.value, STATE_STYLE.get(host.state, "")),
            _text(f"{current.step} ({current.outcome})" if current else "-"),
            _elapsed(time.time() - since) if since and host.state not in (HostState.PENDING,) else "",
            _text(printable(note)[:300]),
        )
    actions = Table.grid()
    for at, action, actor, detail in store.actions(rollout.id)[-8:]:
        when = time.strftime("%H:%M:%S", time.localtime(at))
        actions.add_row(_text(f"{when} {action} by {actor}: {detail}"))
    return Group(header, table, actions)


STATE_STYLE = {
    HostState.SUCCEEDED: "green",
    HostState.ROLLED_BACK: "yellow",
    HostState.FAILED: "yellow",
    HostState.FAILED_OUT: "bold red",
    HostState.SKIPPED: "dim",
}


def summary(console: Console, rollout: Rollout, hosts: list[HostStatus], steps: list[Step]) -> None:
    table = Table(title=_text(f"Rollout {rollout.id} ({rollout.name}, pool {rollout.pool})"))
    for column in ("host", "batch", "result", "steps (seconds)", "note"):
        table.add_column(column)
    for host in hosts:
        mine = [s for s in steps if s.host == host.name and s.ended_at is not None]
        timing = " ".join(f"{s.step}={s.ended_at - s.started_at:.2f}" for s in mine if s.ended_at)
        note = host.progress.error
        table.add_row(
            _text(host.name),
            str(host.batch + 1),
            _text(host.state.value, STATE_STYLE.get(host.state, "")),
            _text(timing),
            _text(note),
        )
    console.print(table)
    took = (rollout.finished_at or time.time()) - (rollout.started_at or rollout.created_at)
    style = "green" if rollout.state is RolloutState.SUCCEEDED else "bold red"
    console.print(
        Text.assemble((rollout.state.value, style), printable(f" in {took:.1f}s: {rollout.reason}"))
    )
    out = [h.name for h in hosts if h.state is HostState.FAILED_OUT]
    if out:
        console.print(
            _text(
                f"ATTENTION: {', '.join(out)} left OUT of the load balancer pool; fix and return by hand",
                "bold red",
            )
        )
