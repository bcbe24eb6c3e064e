"""`schedule`, `schedules` and `unschedule`: start a rollout later, list schedules, cancel one.

The commands are added to the main group by orchestrator.cli; errors (InputError: exit 2) are turned
into one line by its ``main``. Workers start due schedules from their reconciler loop. The
composition root is imported inside each command: every CLI command imports this module, and only
these three need the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from orchestrator.display import printable
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.terminal import console, host_list


def _actor(name: str | None) -> str:
    from orchestrator.app.identity import actor

    return actor(name)


@click.command()
@click.argument("playbook", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-i",
    "--inventory",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Inventory YAML file.",
)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    default=None,
    help="When: ISO 8601 with a zone (2026-12-05T01:30+01:00), or 'YYYY-MM-DD HH:MM' in the playbook "
    "window's time zone (UTC if it has no window).",
)
@click.option("--next-window", is_flag=True, help="When the playbook's maintenance window next opens.")
@click.option("--hosts", default=None, help="Comma-separated host names: only these (in pool order).")
@click.option(
    "--as", "actor", default=None, help="Who schedules it (recorded); else ORCH_ACTOR, else the login name."
)
@click.option("--reason", default=None, help="Why (recorded, and shown in the change report).")
@click.option("--change", "ticket", default=None, metavar="TICKET", help="The change ticket, e.g. CHG-1234.")
def schedule(
    playbook: Path,
    inventory: Path,
    at_text: str | None,
    next_window: bool,
    hosts: str | None,
    actor: str | None,
    reason: str | None,
    ticket: str | None,
) -> None:
    """Start a rollout later. The playbook and inventory are checked now, and again when it starts."""
    from orchestrator.app.identity import reason as reason_of
    from orchestrator.app.submit import change_ticket, load_spec
    from orchestrator.schedule import in_utc, in_zone, parse_at
    from orchestrator.store.schedules import add_schedule

    if (at_text is None) == (not next_window):
        raise InputError("--at", "give one of --at TIME or --next-window", "e.g. --at '2026-12-05 01:30'")
    who, why, ticket = _actor(actor), reason_of(reason), change_ticket(ticket)
    only = host_list(hosts)
    spec = load_spec(playbook, inventory, hosts=only)
    window = spec.window.parsed() if spec.window else None
    current = datetime.now(UTC)
    if next_window:
        if window is None:
            raise InputError(
                str(playbook),
                "--next-window: the playbook has no maintenance window",
                "add `window: {timezone: Europe/Paris, allowed: ['Sat 01:00-05:00']}` or give --at TIME",
            )
        at = window.next_open(current)
    else:
        try:
            at = parse_at(at_text or "", window.timezone if window else None)
        except (ValueError, OverflowError) as exc:
            what, _, expected = str(exc).partition("; ")
            raise InputError("--at", what, expected or "a date and time such as '2026-12-05 01:30'") from None
        if at < current:
            raise InputError(
                "--at",
                f"{at_text!r} ({in_utc(at.timestamp())}) is in the past, it is now "
                f"{in_utc(current.timestamp())}",
                "a time to come",
            )
        if at.year > current.year + 100:  # window arithmetic near year 9999 overflows; no need to go there
            raise InputError("--at", f"{at_text!r} is more than a hundred years ahead", "a nearer time")

    from orchestrator import context

    store = context.build().store
    row = add_schedule(
        store,
        playbook,
        inventory,
        run_at=at.timestamp(),
        created_by=who,
        hosts=only,
        next_window=next_window,
        detail=f"next window: {window.describe()}" if next_window and window else "",
        change_ticket=ticket,
        reason=why,
    )
    when = in_utc(row.run_at or 0.0)
    if window:
        when += f" ({in_zone(row.run_at or 0.0, window.timezone)})"
    console.print(printable(f"scheduled {row.id}: {spec.name} on pool {spec.pool} at {when}"), soft_wrap=True)
    if window and not window.is_open(at):
        opens = window.next_open(at).timestamp()
        console.print(
            f"note: the window {window.describe()} is closed then; it next opens at {in_utc(opens)} "
            f"({in_zone(opens, window.timezone)})",
            soft_wrap=True,
        )
    console.print(f"cancel with `orchestrator unschedule {row.id}`; list with `orchestrator schedules`")


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def schedules(limit: int) -> None:
    """Scheduled rollouts (the newest), soonest first: when, state, and the rollout each started."""
    from orchestrator import context
    from orchestrator.schedule import in_utc, in_zone
    from orchestrator.store.schedules import list_schedules

    rows = list_schedules(context.build().store, limit=limit)
    if not rows:
        console.print("nothing scheduled (see `orchestrator schedule --help`)")
        return
    table = Table(title="schedules")
    for column in ("id", "playbook", "run at (UTC)", "run at (window)", "state", "by", "rollout", "detail"):
        table.add_column(column)
    zones: dict[Path, str | None] = {}
    for r in rows:
        if r.playbook not in zones:
            zones[r.playbook] = _window_zone(r.playbook)
        tz = zones[r.playbook]
        table.add_row(
            str(r.id),
            Text(printable(_short(r.playbook))),
            in_utc(r.run_at) if r.run_at is not None else "-",
            in_zone(r.run_at, tz) if r.run_at is not None and tz else "-",
            r.state.value,
            Text(printable(r.created_by)),
            Text(printable(r.rollout_id or "-")),
            Text(printable(r.detail)[:100]),
        )
    console.print(table)


@click.command()
@click.argument("schedule_id", metavar="ID", type=int)
@click.option(
    "--as", "actor", default=None, help="Who cancels it (recorded); else ORCH_ACTOR, else the login name."
)
@click.option("--reason", default=None, help="Why (recorded).")
def unschedule(schedule_id: int, actor: str | None, reason: str | None) -> None:
    """Cancel a schedule that has not started yet."""
    from orchestrator import context
    from orchestrator.app.identity import reason as reason_of
    from orchestrator.store.schedules import cancel_schedule

    row = cancel_schedule(context.build().store, schedule_id, _actor(actor), reason_of(reason))
    console.print(printable(f"schedule {row.id} cancelled ({row.detail})"))


def _window_zone(playbook: Path) -> str | None:
    """The time zone of the playbook's window as it reads now; None without one or if it no longer loads."""
    from orchestrator.model.playbook import load_playbook

    try:
        book, _ = load_playbook(playbook)
    except OrchestratorError:
        return None
    return book.window.timezone if book.window else None


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
