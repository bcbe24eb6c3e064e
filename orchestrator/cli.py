"""Command line. Exit codes: 0 done; 1 a host failed or was rolled back; 2 bad input or usage;
3 refused (preflight); 4 a server was left out of its pool and needs a human."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.config import load_settings
from orchestrator.display import printable
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.model.states import HostState, RolloutState
from orchestrator.terminal import console, err, host_list

if TYPE_CHECKING:
    from orchestrator.app.follow import Outcome

playbook_arg = click.argument("playbook", type=click.Path(path_type=Path, dir_okay=False))
inventory_opt = click.option(
    "-i",
    "--inventory",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Inventory YAML file.",
)
hosts_opt = click.option(
    "--hosts", default=None, help="Comma-separated host names: only these (in pool order)."
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROLLOUT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _rollout_id(value: str) -> str:
    import re

    if not re.match(ROLLOUT_ID, value):
        raise InputError(
            "ROLLOUT",
            f"{printable(value[:80])!r} is not a rollout id",
            "an id as `orchestrator history` lists",
        )
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Zero-downtime rolling updates of application servers behind a load balancer."""


@cli.command()
@playbook_arg
@inventory_opt
def validate(playbook: Path, inventory: Path) -> None:
    """Check a playbook and inventory: schema, pool and hosts, files, templates. Touches nothing."""
    from orchestrator.app.submit import load_spec

    spec = load_spec(playbook, inventory)
    console.print(
        printable(f"ok: {playbook} on pool {spec.pool}: {len(spec.hosts)} hosts, {len(spec.batches)} batches")
    )


@cli.command()
@playbook_arg
@inventory_opt
@hosts_opt
def plan(playbook: Path, inventory: Path, hosts: str | None) -> None:
    """Show batches, order and every step each host will go through, in full. No side effect; works
    before the upload artifacts exist (and lists the missing ones)."""
    from orchestrator.app.submit import load_spec
    from orchestrator.report import plan_text

    missing: list[str] = []
    spec = load_spec(playbook, inventory, hosts=host_list(hosts), missing=missing)
    console.print(plan_text(spec, missing), soft_wrap=True)


rollout_arg = click.argument("rollout")
as_opt = click.option(
    "--as", "actor", default=None, help="Who does this (recorded); else ORCH_ACTOR, else the login name."
)
reason_opt = click.option("--reason", default=None, help="Why (recorded, and shown in the change report).")
change_opt = click.option(
    "--change", "ticket", default=None, metavar="TICKET", help="The change ticket, e.g. CHG-1234 (recorded)."
)


@cli.command()
@playbook_arg
@inventory_opt
@hosts_opt
@as_opt
@reason_opt
@change_opt
def run(
    playbook: Path,
    inventory: Path,
    hosts: str | None,
    actor: str | None,
    reason: str | None,
    ticket: str | None,
) -> None:
    """Run the rolling update; live progress per host and step, then a summary."""
    from orchestrator import context
    from orchestrator.app import identity
    from orchestrator.app.submit import change_ticket, load_spec, new_rollout_id, with_request
    from orchestrator.engine.secrets import SecretValues
    from orchestrator.workflows.worker import execute

    settings = load_settings()
    who, why, ticket = identity.actor(actor), identity.reason(reason), change_ticket(ticket)
    spec = load_spec(playbook, inventory, rollout_id=new_rollout_id(), hosts=host_list(hosts))
    spec = with_request(spec, requested_by=who, change=ticket, reason=why)
    if settings.in_process:  # this process is the worker: a secret it cannot read stops it here
        SecretValues(spec.secrets).require()
    _end(execute(context.build(settings), spec, _emit))


def _emit(line: str) -> None:
    console.print(line, soft_wrap=True)


def _end(outcome: Outcome) -> None:
    from orchestrator.report import summary

    summary(console, outcome.rollout, outcome.hosts, outcome.steps)
    if outcome.interrupted:
        rollout = outcome.rollout
        console.print(
            printable(
                f"rollout {rollout.id} is {rollout.state.value}, every server back in the pool; "
                f"`orchestrator resume {rollout.id}` goes on"
            )
        )
        sys.exit(130)
    if any(h.state is HostState.FAILED_OUT for h in outcome.hosts):
        sys.exit(4)
    sys.exit(0 if outcome.rollout.state is RolloutState.SUCCEEDED else 1)


@cli.command()
@click.argument("rollout", required=False)
@click.option("--watch", is_flag=True, help="Keep the view up to date (every second) until the rollout ends.")
def status(rollout: str | None, watch: bool) -> None:
    """One rollout in detail (hosts, capacity, window, what it waits for), or every active rollout."""
    from orchestrator import context
    from orchestrator.report import rollouts_table, status_view

    ctx = context.build()
    store = ctx.store
    if rollout is None:
        active = store.active_rollouts()
        if not active:
            console.print("no active rollout (see `orchestrator history`)")
            return
        console.print(rollouts_table("active rollouts", active))
        console.print("change report of one: `orchestrator report ROLLOUT --format html -o FILE`")
        return
    found = store.rollout(_rollout_id(rollout))
    if found is None:
        raise InputError("ROLLOUT", f"no rollout {rollout!r}", "an id that `orchestrator history` lists")
    servers = ctx.runtime.loadbalancer(found.spec.loadbalancer).servers
    if not watch:
        console.print(status_view(store, found, servers))
        console.print(printable(f"change report: `orchestrator report {found.id} --format html -o FILE`"))
        return
    import time

    from rich.live import Live

    from orchestrator.model.states import ROLLOUT_DONE

    with Live(status_view(store, found, servers), console=console, refresh_per_second=2) as live:
        while found is not None and found.state not in ROLLOUT_DONE:
            time.sleep(1)
            found = store.rollout(rollout)
            if found is not None:
                live.update(status_view(store, found, servers))


@cli.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def history(limit: int) -> None:
    """Past and current rollouts, newest first, with outcome and duration."""
    from orchestrator import context
    from orchestrator.report import rollouts_table

    console.print(rollouts_table("rollouts", context.build().store.rollouts(limit=limit)))
    console.print("change report of one: `orchestrator report ROLLOUT --format html|json|md -o FILE`")


@cli.command()
@rollout_arg
@as_opt
@reason_opt
def resume(rollout: str, actor: str | None, reason: str | None) -> None:
    """Resume a rollout that stopped making progress (its CLI or worker died, or it paused)."""
    from orchestrator import context
    from orchestrator.app import identity
    from orchestrator.workflows.worker import resume as resume_rollout

    who, why = identity.actor(actor), identity.reason(reason)
    _end(resume_rollout(context.build(), _rollout_id(rollout), who, _emit, why))


def _operate(action: str, rollout: str, actor: str | None, reason: str | None) -> None:
    """Apply an operator action; with a broker, act now; otherwise the process running the rollout
    (its in-process worker's reconciler) carries it out within seconds."""
    from orchestrator import context
    from orchestrator.app import identity
    from orchestrator.app.operate import NEEDS_REASON, operate

    rollout = _rollout_id(rollout)
    who = identity.actor(actor)
    why = identity.reason(reason, required_for=action if action in NEEDS_REASON else "")
    ctx = context.build()
    scheduler = None if ctx.settings.in_process else ctx.scheduler
    text = operate(ctx.store, scheduler, action, rollout, who, why)
    console.print(printable(f"{rollout}: {text}"), soft_wrap=True)
    if scheduler is None:
        every = ctx.settings.reconcile_every
        console.print(f"(no broker: the process running {rollout} applies this within {every:g}s)")


@cli.command()
@rollout_arg
@as_opt
@reason_opt
def pause(rollout: str, actor: str | None, reason: str | None) -> None:
    """No new host starts; hosts in flight finish and return to the pool. `resume` continues."""
    _operate("pause", rollout, actor, reason)


@cli.command()
@rollout_arg
@as_opt
@click.option("--reason", required=True, help="Why (required: recorded and shown in the change report).")
def abort(rollout: str, actor: str | None, reason: str) -> None:
    """Stop: no new host; a host in flight is put back, or finishes (reverted if its checks fail)."""
    _operate("abort", rollout, actor, reason)


@cli.command()
@rollout_arg
@as_opt
@click.option("--reason", required=True, help="Why (required: recorded and shown in the change report).")
def rollback(rollout: str, actor: str | None, reason: str) -> None:
    """Revert every host this rollout updated, newest first, through drain, checks and return."""
    _operate("rollback", rollout, actor, reason)


@cli.command()
@rollout_arg
@as_opt
@reason_opt
def approve(rollout: str, actor: str | None, reason: str | None) -> None:
    """Let a rollout waiting after a batch (typically the canary) go on."""
    _operate("approve", rollout, actor, reason)


@cli.command()
@rollout_arg
@as_opt
@click.option("--reason", required=True, help="Why (required: recorded and shown in the change report).")
def reject(rollout: str, actor: str | None, reason: str) -> None:
    """Stop a rollout waiting for approval, by its on_failure policy (halt, or roll back)."""
    _operate("reject", rollout, actor, reason)


@cli.command()
@click.option("--concurrency", type=int, default=None, help="Worker threads/processes (default 4).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics (read from the store) on this port.",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    help="Address for the metrics server (0.0.0.0 inside a pod).",
)
def worker(concurrency: int | None, loglevel: str, metrics_port: int | None, metrics_address: str) -> None:
    """Run a Celery worker for the broker in ORCH_BROKER_URL (and its reconciler and scheduler)."""
    from orchestrator import context
    from orchestrator.workflows.worker import run_worker

    settings = load_settings()
    if settings.broker_url is None:
        raise click.UsageError("ORCH_BROKER_URL is not set; e.g. amqp://guest:guest@127.0.0.1:5672//")
    ctx = context.build(settings)
    if metrics_port is not None:
        from orchestrator.metrics import serve

        serve(ctx.store_opener(), metrics_port, metrics_address)
    run_worker(ctx, concurrency=concurrency, loglevel=loglevel)


@cli.command()
@click.option(
    "--hosts",
    "count",
    type=click.IntRange(2, 8),
    default=4,
    show_default=True,
    help="How many VMs (or loopback hosts).",
)
@click.option(
    "--loopback", is_flag=True, help="Hosts on loopback addresses instead of VMs (no QEMU; seconds)."
)
@click.option("--keep", is_flag=True, help="Leave the VM lab running afterwards.")
def demo(count: int, loopback: bool, keep: bool) -> None:
    """A real rolling update under live traffic, a broken release reverted, and a no-drain control."""
    from orchestrator.lab.demo import lab_demo, loopback_demo

    sys.exit(loopback_demo(console, hosts=count) if loopback else lab_demo(console, vms=count, keep=keep))


@cli.command()
def scheduler() -> None:
    """Run due schedules with an in-process worker, in the foreground (without a broker). With a broker,
    every `orchestrator worker` already runs them."""
    import threading

    from orchestrator import context
    from orchestrator.workflows.worker import InProcessWorker

    settings = load_settings()
    if not settings.in_process:
        raise click.UsageError("ORCH_BROKER_URL is set: the workers run schedules; `orchestrator worker`")
    console.print("scheduler running with an in-process worker; Ctrl-C stops it")
    with InProcessWorker(context.build(settings)):
        threading.Event().wait()


def _attach_schedules() -> None:
    from orchestrator.cli_schedule import schedule, schedules, unschedule

    for command in (schedule, schedules, unschedule):
        cli.add_command(command)


_attach_schedules()


def _attach_audit() -> None:
    from orchestrator.cli_audit import audit, report

    cli.add_command(audit)
    cli.add_command(report)


_attach_audit()


def _attach_lab() -> None:
    try:
        from orchestrator.lab.cli import lab  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # the lab is optional tooling; the orchestrator works without it
        return
    cli.add_command(lab)


_attach_lab()


def main() -> None:
    """Every mistake is one line on stderr (``error: WHERE: what; expected``) and an exit code; never a
    traceback for a user's input."""
    from orchestrator.redact import install_log_redaction
    from orchestrator.workflows.interrupts import LeftAtOnce

    install_log_redaction()
    level = os.environ.get("ORCH_LOG_LEVEL", "").upper()
    if level:  # the CLI's own logs (and an in-process worker's) on stderr, for a night's debugging
        logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr, format=LOG_FORMAT)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin list at every store open
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "orchestrator"
        where, what = command, exc.format_message()
        if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) and exc.param:
            # The option or argument at fault, as the user typed it.
            where = (
                exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.human_readable_name
            )
            what = exc.message
        err.print(printable(f"error: {where}: {what.rstrip('.')}; see `{command} --help`"))
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        err.print(printable(f"error: {exc.format_message()}"))
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt, LeftAtOnce):
        err.print("interrupted")  # what was left where was said just before
        sys.exit(130)
    except OrchestratorError as exc:
        err.print(printable(f"error: {exc}"))
        sys.exit(exc.exit_code)
