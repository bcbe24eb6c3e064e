"""Schedules on SQLite and on the real PostgreSQL of this machine: the migration, add/list/cancel,
claim_due exactly once under concurrent workers, due_rollouts with a fake start, and the commands
`schedule`, `schedules`, `unschedule` (and `validate` on a bad window) through the CLI's own main()."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from orchestrator.cli import cli, main
from orchestrator.cli_schedule import schedule, schedules, unschedule
from orchestrator.errors import InputError, RolloutRefused
from orchestrator.model.windows import parse_window
from orchestrator.schedule import due_rollouts
from orchestrator.store.db import Store
from orchestrator.store.schedules import (
    Schedule,
    ScheduleRow,
    ScheduleState,
    add_schedule,
    cancel_schedule,
    claim_due,
    get_schedule,
    list_schedules,
    mark_started,
)
from orchestrator.store.schema import Base
from tests.unit.fakes import GOOD_PLAYBOOK, marked_line, write_inputs

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "playbooks" / "examples"
WINDOW = 'window: {timezone: Europe/Paris, allowed: ["Sat 01:00-05:00", "Sun 01:00-05:00"]}\n'
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC: the store functions take "now" as an argument


def add(
    store: Store,
    run_at: float | None = NOW - 60,
    *,
    hosts: tuple[str, ...] = (),
    next_window: bool = False,
    detail: str = "",
) -> Schedule:
    row = add_schedule(
        store,
        Path("/srv/p.yaml"),
        Path("/srv/i.yaml"),
        run_at=run_at or 0.0,
        created_by="alice",
        hosts=hosts,
        next_window=next_window,
        detail=detail,
    )
    if run_at is None:  # not something add_schedule does: a row written by hand, never due
        with store.session() as s:
            found = s.get(ScheduleRow, row.id)
            assert found is not None
            found.run_at = None
    return row


# store


def test_the_migrations_match_the_table_classes(store: Store) -> None:
    from alembic.script import ScriptDirectory

    from orchestrator.store.migrate import config

    head = ScriptDirectory.from_config(config()).get_current_head()
    with store.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []  # every table, not only the one a migration touched last


def test_add_list_and_cancel(store: Store) -> None:
    later = add(store, NOW + 3600, hosts=("web1", "web2"))
    sooner = add(store, NOW + 60, next_window=True, detail="next window: Sat 01:00-05:00 (UTC)")
    assert later.state is ScheduleState.SCHEDULED and later.hosts == ("web1", "web2")
    assert (later.playbook, later.inventory, later.created_by) == (
        Path("/srv/p.yaml"),
        Path("/srv/i.yaml"),
        "alice",
    )
    assert [s.id for s in list_schedules(store)] == [sooner.id, later.id]  # soonest first
    assert sooner.next_window and sooner.detail.startswith("next window")

    cancelled = cancel_schedule(store, later.id, "bob")
    assert cancelled.state is ScheduleState.CANCELLED and cancelled.detail.startswith("cancelled by bob at ")
    assert [s.id for s in list_schedules(store, states=[ScheduleState.SCHEDULED])] == [sooner.id]
    assert get_schedule(store, later.id) == cancelled
    assert get_schedule(store, 9999) is None
    with pytest.raises(InputError, match=r"^ID: schedule \d+ cannot be cancelled: it is already cancelled"):
        cancel_schedule(store, later.id, "bob")
    with pytest.raises(InputError, match=r"^ID: no schedule 9999 in the store; an id that `orchestrator sch"):
        cancel_schedule(store, 9999, "bob")
    assert claim_due(store, NOW + 7200) == [get_schedule(store, sooner.id)]  # the cancelled one never runs


def test_a_started_schedule_cannot_be_cancelled(store: Store) -> None:
    row = add(store)
    (claimed,) = claim_due(store, NOW, owner="worker-1")
    assert claimed.id == row.id and claimed.state is ScheduleState.STARTED and "worker-1" in claimed.detail
    with pytest.raises(InputError, match="it is already started"):
        cancel_schedule(store, row.id, "bob")
    mark_started(store, row.id, "R42")
    with pytest.raises(InputError, match=r"already started as rollout R42 .*see `orchestrator status R42`"):
        cancel_schedule(store, row.id, "bob")
    assert get_schedule(store, row.id) == replace(claimed, rollout_id="R42", detail="started rollout R42")


def test_only_due_schedules_are_claimed(store: Store) -> None:
    due = add(store, NOW)  # exactly now is due
    add(store, NOW + 1)
    add(store, None)
    assert [s.id for s in claim_due(store, NOW)] == [due.id]
    assert claim_due(store, NOW) == []


def test_claim_due_gives_each_schedule_to_exactly_one_of_8_workers(store: Store) -> None:
    ids = {add(store, NOW - n).id for n in range(24)}
    barrier = threading.Barrier(8)
    won: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait(timeout=30)
            won[name] = [s.id for s in claim_due(store, NOW, owner=name)]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(won) == 8
    claimed = [i for mine in won.values() for i in mine]
    assert sorted(claimed) == sorted(ids)  # every one, none twice
    for name, mine in won.items():
        for schedule_id in mine:
            found = get_schedule(store, schedule_id)
            assert found is not None and found.state is ScheduleState.STARTED
            assert found.detail.startswith(f"claimed by {name} at ")


# due_rollouts


class FakeStart:
    """Records calls; fails as told by the playbook's name."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def __call__(self, due: Schedule) -> str:
        playbook = due.playbook
        with self.lock:
            self.calls.append((playbook, due.inventory, due.hosts))
        if playbook.name == "bad.yaml":
            raise InputError(f"{playbook}:3", "unknown field 'pol'", "remove it or check its spelling")
        if playbook.name == "busy.yaml":
            raise RolloutRefused("pool web is being updated by rollout R1")
        if playbook.name == "bug.yaml":
            raise RuntimeError("connection to the broker lost")
        return f"R-{playbook.stem}"


def test_due_rollouts_starts_each_due_schedule_and_records_failures(store: Store) -> None:
    made = {
        name: add_schedule(
            store,
            Path(f"/srv/{name}.yaml"),
            Path("/srv/i.yaml"),
            run_at=NOW - 5,
            created_by="alice",
            hosts=("web1",) if name == "ok" else (),
        )
        for name in ("ok", "bad", "busy", "bug")
    }
    later = add(store, NOW + 600)
    start = FakeStart()
    done = {s.playbook.stem: s for s in due_rollouts(store, NOW, start)}

    assert sorted(start.calls) == sorted(
        (Path(f"/srv/{n}.yaml"), Path("/srv/i.yaml"), ("web1",) if n == "ok" else ()) for n in made
    )
    assert done["ok"].state is ScheduleState.STARTED and done["ok"].rollout_id == "R-ok"
    assert done["ok"].detail == "started rollout R-ok"
    assert done["bad"].state is ScheduleState.FAILED and done["bad"].rollout_id is None
    assert (
        done["bad"].detail
        == "not started: /srv/bad.yaml:3: unknown field 'pol'; remove it or check its spelling"
    )
    assert done["busy"].detail == "not started: pool web is being updated by rollout R1"
    assert done["bug"].state is ScheduleState.FAILED
    assert done["bug"].detail == "not started: RuntimeError: connection to the broker lost"
    assert {s.id: s for s in list_schedules(store)} == {**{s.id: s for s in done.values()}, later.id: later}
    assert due_rollouts(store, NOW + 1, start) == []  # nothing twice
    assert len(start.calls) == 4


def test_due_rollouts_from_4_workers_at_once_starts_each_once(store: Store) -> None:
    for _ in range(10):
        add(store)
    start = FakeStart()
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait(timeout=30)
        due_rollouts(store, NOW, start, owner=f"w{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(start.calls) == 10
    assert all(s.state is ScheduleState.STARTED and s.rollout_id == "R-p" for s in list_schedules(store))


# the commands


Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def call(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Invoke]:
    """The CLI's main() with the schedule commands on its group and ORCH_DATABASE_URL on ``store``."""
    added = [c for c in (schedule, schedules, unschedule) if c.name not in cli.commands]
    for command in added:
        cli.add_command(command)
    monkeypatch.setenv("ORCH_DATABASE_URL", store.url)
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str | Path) -> tuple[int, str, str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["orchestrator", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    try:
        yield invoke
    finally:
        for command in added:
            cli.commands.pop(str(command.name), None)


def example(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    """The DxCare example playbook (plus ``extra`` lines) in tmp, its release archive beside it."""
    book = tmp_path / "dxcare.yaml"
    book.write_text((EXAMPLES / "dxcare-2026.12.yaml").read_text() + extra)
    (tmp_path / "releases").mkdir(exist_ok=True)
    (tmp_path / "releases" / "dxcare-2026.12.tar.gz").write_bytes(b"placeholder artifact")
    return book, EXAMPLES / "inventory.yaml"


def one_error(result: tuple[int, str, str]) -> str:
    code, _, err = result
    assert code == 2, result
    assert "Traceback" not in err
    return err


def test_schedule_at_a_time_then_list_and_cancel(call: Invoke, store: Store, tmp_path: Path) -> None:
    book, inventory = example(tmp_path)
    code, out, err = call(
        "schedule",
        book,
        "-i",
        inventory,
        "--at",
        "2099-06-01T22:30:00+02:00",
        "--hosts",
        "dxapp02,dxapp01",
        "--as",
        "carol",
    )
    assert code == 0, err
    (row,) = list_schedules(store)
    assert f"scheduled {row.id}: dxcare-2026.12 on pool dxcare-app at 2099-06-01 20:30 UTC" in out
    assert row.run_at == datetime(2099, 6, 1, 20, 30, tzinfo=UTC).timestamp()
    assert (row.playbook, row.inventory) == (book.resolve(), inventory.resolve())
    assert (row.hosts, row.created_by, row.next_window) == (("dxapp02", "dxapp01"), "carol", False)

    code, out, _ = call("schedules")
    assert code == 0 and "dxcare.yaml" in out and "2099-06-01 20:30 UTC" in out and "scheduled" in out

    code, out, err = call("unschedule", str(row.id), "--as", "dave")
    assert code == 0, err
    assert f"schedule {row.id} cancelled (cancelled by dave at " in out
    err = one_error(call("unschedule", str(row.id)))
    assert err.startswith(f"error: ID: schedule {row.id} cannot be cancelled: it is already cancelled")
    assert one_error(call("unschedule", "12345")).startswith("error: ID: no schedule 12345 in the store; ")


def test_a_local_time_is_read_in_the_window_zone(call: Invoke, store: Store, tmp_path: Path) -> None:
    book, inventory = example(tmp_path, WINDOW)
    code, out, err = call("schedule", book, "-i", inventory, "--at", "2099-07-04 01:30")  # a Saturday, CEST
    assert code == 0, err
    (row,) = list_schedules(store)
    assert row.run_at == datetime(2099, 7, 3, 23, 30, tzinfo=UTC).timestamp()
    assert "2099-07-03 23:30 UTC (2099-07-04 01:30 CEST)" in out and "note:" not in out
    code, out, err = call("schedule", book, "-i", inventory, "--at", "2099-07-06 12:00")  # a Monday
    assert code == 0, err
    assert "note: the window Sat 01:00-05:00, Sun 01:00-05:00 (Europe/Paris) is closed then" in out
    code, out, _ = call("schedules")
    assert "2099-07-04 01:30 CEST" in out


def test_a_local_time_without_a_window_is_utc(call: Invoke, store: Store, tmp_path: Path) -> None:
    book, inventory = example(tmp_path)
    assert call("schedule", book, "-i", inventory, "--at", "2099-01-01 10:00")[0] == 0
    assert list_schedules(store)[0].run_at == datetime(2099, 1, 1, 10, tzinfo=UTC).timestamp()


def test_schedule_at_the_next_window(call: Invoke, store: Store, tmp_path: Path) -> None:
    book, inventory = example(tmp_path, WINDOW)
    window = parse_window("Europe/Paris", ["Sat 01:00-05:00", "Sun 01:00-05:00"])
    before = datetime.now(UTC)
    code, _, err = call("schedule", book, "-i", inventory, "--next-window")
    after = datetime.now(UTC)
    assert code == 0, err
    (row,) = list_schedules(store)
    assert row.next_window and row.run_at is not None
    assert window.next_open(before).timestamp() <= row.run_at <= window.next_open(after).timestamp()
    assert row.detail == "next window: Sat 01:00-05:00, Sun 01:00-05:00 (Europe/Paris)"


def test_schedule_refuses_bad_input_with_exit_2(call: Invoke, store: Store, tmp_path: Path) -> None:
    book, inventory = example(tmp_path)
    err = one_error(call("schedule", book, "-i", inventory, "--at", "2020-01-01T00:00Z"))
    assert err.startswith("error: --at: '2020-01-01T00:00Z' (2020-01-01 00:00 UTC) is in the past")
    err = one_error(call("schedule", book, "-i", inventory, "--at", "next friday"))
    assert "'next friday' is not a date and time; ISO 8601 with a zone" in err
    err = one_error(call("schedule", book, "-i", inventory, "--at", "2099-01-01"))
    assert "has no time of day" in err
    assert "give one of --at TIME or --next-window" in one_error(call("schedule", book, "-i", inventory))
    err = one_error(call("schedule", book, "-i", inventory, "--next-window", "--at", "2099-01-01 10:00"))
    assert "give one of --at TIME or --next-window" in err
    err = one_error(call("schedule", book, "-i", inventory, "--next-window"))
    assert err.strip() == (
        f"error: {book}: --next-window: the playbook has no maintenance window; add `window: "
        "{timezone: Europe/Paris, allowed: ['Sat 01:00-05:00']}` or give --at TIME"
    )
    err = one_error(call("schedule", book, "-i", inventory, "--at", "2099-01-01 10:00", "--hosts", "nope"))
    assert err.startswith("error: --hosts: host 'nope' is not in pool 'dxcare-app'")
    assert list_schedules(store) == []


def test_a_bad_playbook_fails_at_schedule_time_with_its_line(
    call: Invoke, store: Store, tmp_path: Path
) -> None:
    playbook = GOOD_PLAYBOOK.replace("pool: web", "pool: web\npol: typo  # <-")
    book, inventory = write_inputs(tmp_path, playbook=playbook)
    err = one_error(call("schedule", book, "-i", inventory, "--at", "2099-01-01 10:00"))
    assert err.startswith(f"error: {book}:{marked_line(playbook)}: unknown field 'pol'; ")
    assert list_schedules(store) == []


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            'window: {timezone: Europe/Pariss, allowed: ["Sat 01:00-05:00"]}  # <-',
            "window.timezone: unknown time zone",
        ),
        (
            "window:\n  timezone: UTC\n  allowed:\n    - Sat 01:00-05:00\n    - Sunday 01:00-05:00  # <-",
            "window.allowed.1: range 'Sunday 01:00-05:00': 'Sunday' is not a day",
        ),
        (
            "window:\n  timezone: UTC\n  allowed:  # <-\n    - Sat 01:00-05:00\n    - Sat 04:00-06:00",
            "window.allowed: ranges 'Sat 01:00-05:00' and 'Sat 04:00-06:00' overlap (Sat 04:00-05:00); ",
        ),
    ],
)
def test_a_bad_window_fails_validate_and_schedule_with_its_line(
    call: Invoke, store: Store, tmp_path: Path, window: str, message: str
) -> None:
    playbook = GOOD_PLAYBOOK + window + "\n"
    book, inventory = write_inputs(tmp_path, playbook=playbook)
    prefix = f"error: {book}:{marked_line(playbook)}: {message}"
    assert one_error(call("validate", book, "-i", inventory)).startswith(prefix)
    assert one_error(call("schedule", book, "-i", inventory, "--next-window")).startswith(prefix)
    assert list_schedules(store) == []
