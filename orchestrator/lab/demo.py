"""`orchestrator demo`: a real rolling update under live traffic, then a broken release that is
reverted, then the same update without draining (the negative control), and what it all measured."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import context
from orchestrator.app.identity import actor
from orchestrator.app.submit import load_spec, new_rollout_id, with_request
from orchestrator.config import load_settings
from orchestrator.display import printable
from orchestrator.lab.measure import Measured, naive_update, under_load
from orchestrator.model.records import HostStatus, Rollout, Step
from orchestrator.report import summary
from orchestrator.workflows.worker import execute

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@dataclass(frozen=True)
class Target:
    """Where the demo runs: an inventory behind an HAProxy frontend, and its playbooks."""

    title: str
    inventory: Path
    url: str
    lb_socket: Path
    upgrade: Path  # v1 -> v2
    broken: Path  # v2 -> v3 that fails its checks


@dataclass
class Act:
    title: str
    measured: Measured
    rollout: Rollout | None = None
    hosts: list[HostStatus] | None = None
    steps: list[Step] | None = None


def _rollout(console: Console, target: Target, playbook: Path, title: str, short: str) -> Act:
    console.rule(title)
    ctx = context.build(load_settings())
    spec = load_spec(playbook, target.inventory, rollout_id=new_rollout_id())
    spec = with_request(spec, requested_by=actor(None), reason=f"demo: {title}")
    with under_load(target.url, target.lb_socket) as figures:
        outcome = execute(ctx, spec, lambda line: console.print(line, markup=False, soft_wrap=True))
    summary(console, outcome.rollout, outcome.hosts, outcome.steps)
    return Act(short, figures(), outcome.rollout, outcome.hosts, outcome.steps)


def _control(console: Console, target: Target, title: str, short: str) -> Act:
    console.rule(title)
    console.print("The same update, host by host, done in place while each server stays in the pool.")
    with under_load(target.url, target.lb_socket) as figures:
        naive_update(target.inventory, target.upgrade)
    return Act(short, figures())


def figures_table(acts: list[Act], pool_size: int) -> Table:
    table = Table(title="What the clients saw (slow requests, keep-alive sessions, through HAProxy)")
    for column in (
        "run",
        "requests",
        "failed",
        "p50 before",
        "p99 before",
        "p50 during",
        "p99 during",
        "lowest in service",
        "took",
    ):
        table.add_column(column, justify="right" if column != "run" else "left")
    for act in acts:
        load = act.measured.load
        table.add_row(
            act.title,
            str(load.sent),
            Text(str(load.failed), style="red" if load.failed else "green"),
            f"{load.latency_ms(0.5, 'before'):.0f} ms",
            f"{load.latency_ms(0.99, 'before'):.0f} ms",
            f"{load.latency_ms(0.5, 'during'):.0f} ms",
            f"{load.latency_ms(0.99, 'during'):.0f} ms",
            f"{act.measured.min_in_service}/{pool_size}",
            f"{act.measured.seconds:.1f} s",
        )
    return table


def failure_lines(act: Act, most: int = 5) -> list[str]:
    """What the clients saw fail during a rollout, first ones first: an error alone says where to look."""
    failures = act.measured.load.failures()
    if not failures:
        return []
    first = act.measured.load.requests[0].started
    lines = [f"{act.title}: {len(failures)} failed client requests:"]
    for request in failures[:most]:
        what = request.error or request.status
        lines.append(printable(f"  +{request.started - first:.2f}s ({request.phase}) {what}"))
    if len(failures) > most:
        lines.append(f"  ... and {len(failures) - most} more")
    return lines


def change_record(console: Console, rollout_ids: list[str]) -> None:
    """What an auditor would get of the two rollouts: the log verified, a report of each."""
    from orchestrator.app.audit import verifiers, verify_store
    from orchestrator.app.change_report import build, render
    from orchestrator.audit.signing import private_write

    ctx = context.build(load_settings())
    verdict = verify_store(ctx.store, ctx.settings, [], verifiers(ctx.settings, []))
    said = "verified" if verdict.ok else "does NOT verify: " + "; ".join(verdict.problems)
    console.print(
        printable(
            f"Audit log {said}: {verdict.records} records, {verdict.signed_sizes} signed checkpoints "
            f"(in the store and exported to {ctx.settings.audit_folder})"
        ),
        soft_wrap=True,
    )
    folder = ctx.settings.home / "reports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for rollout_id in rollout_ids:
        document = build(ctx.store, rollout_id)
        for form in ("html", "json", "md"):
            private_write(folder / f"{rollout_id}.{form}", render(document, form))
        console.print(
            printable(f"Change report of {rollout_id}: {folder / rollout_id}.html (.json, .md)"),
            soft_wrap=True,
        )


def run_demo(console: Console, target: Target, pool_size: int, reset: Callable[[], None]) -> int:
    """The three acts; ``reset`` puts every host back on v1 before the control."""
    acts = [
        _rollout(console, target, target.upgrade, "1. rolling update v1 -> v2", "v1 -> v2"),
        _rollout(console, target, target.broken, "2. broken release v3: the first host fails", "v3 broken"),
    ]
    reset()
    acts.append(_control(console, target, "3. negative control: v1 -> v2 WITHOUT draining", "no drain"))
    console.rule("summary")
    console.print(figures_table(acts, pool_size))
    for act in acts[:2]:
        for line in failure_lines(act):
            console.print(line, markup=False, soft_wrap=True)
    change_record(console, [act.rollout.id for act in acts[:2] if act.rollout is not None])
    ok = acts[0].measured.load.failed == 0 and acts[1].measured.load.failed == 0
    seen = acts[2].measured.load.failed > 0
    verdict = Text("the measurement can see downtime") if seen else Text("none seen: this proves less", "red")
    console.print(
        Text.assemble(
            "Rollouts: ",
            Text("0 failed client requests") if ok else Text("client requests FAILED", "red"),
            f". Control without draining: {acts[2].measured.load.failed} failed (",
            verdict,
            ").",
        )
    )
    return 0 if ok else 1


def loopback_demo(console: Console, hosts: int = 4) -> int:
    from orchestrator.lab.loopback import LoopbackFarm

    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as tmp:
        farm = LoopbackFarm(Path(tmp) / "farm", hosts=hosts)
        console.print(f"Starting {hosts} loopback hosts (sshd + app each) behind HAProxy in {tmp} ...")
        farm.start()
        try:
            target = Target(
                "loopback",
                farm.inventory,
                farm.url,
                farm.haproxy.socket_path,
                PLAYBOOKS / "loopback-v2.yaml",
                PLAYBOOKS / "loopback-v3-broken.yaml",
            )
            return run_demo(console, target, hosts, farm.reset)
        finally:
            farm.stop()


def lab_demo(console: Console, vms: int = 4, *, keep: bool = False) -> int:
    """The same three acts on real QEMU VMs, from a freshly booted lab (every VM on v1)."""
    import yaml

    from orchestrator.lab import lab

    console.print(f"Booting a fresh lab of {vms} VMs behind HAProxy (first run builds the guest image) ...")
    lab.down()
    info = lab.up(vms)
    console.print(
        f"lab up: inventory {info.inventory}, frontend {info.frontend_url}, "
        f"boot phases {', '.join(f'{k} {v:.1f}s' for k, v in info.timings.items())}",
        soft_wrap=True,
    )
    try:
        inventory = yaml.safe_load(info.inventory.read_text())
        socket = Path(inventory["pools"]["lab"]["loadbalancer"]["socket"])
        target = Target(
            "lab",
            info.inventory,
            info.frontend_url,
            socket,
            PLAYBOOKS / "lab-v2.yaml",
            PLAYBOOKS / "lab-v3-broken.yaml",
        )
        # The control re-applies v2 in place: the same upload, install and hard restart; what clients
        # feel is the restart, whichever version it installs.
        return run_demo(console, target, vms, lambda: None)
    finally:
        if keep:
            console.print(
                f"The lab keeps running: orchestrator lab status; orchestrator lab down. "
                f"Inventory: {info.inventory}"
            )
        else:
            lab.down()
