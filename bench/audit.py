"""What the audit log costs, on SQLite (a temporary folder) and on the local PostgreSQL (a database of
its own, made and dropped here):

1. append: per-transaction medians of an action row alone (no audit), a bare append
   (`Store.audit_record` alone) and `Store.record_action` (the action row and its record); the audit's
   own cost is record_action minus the action row alone. Transactions that crossed a checkpoint (signed,
   exported with fsync) are counted apart. --records of each, interleaved. Target: append <= 1 ms.
2. verify: a log of --verify-records records (1,000 appends a transaction through audit_record, a signed
   checkpoint every 1,000), then the whole process `orchestrator audit verify`, start to exit, median of
   --runs, with its exit code. Target: <= 5 s.
3. report: one rollout of --hosts hosts in batches of 50 written through the Store API the way the
   engine writes it (each host's 7 state changes, its 7 steps started and ended, exit codes), then an
   availability sample a second for 600 s holding every server of the pool; then the whole process
   `orchestrator report ID --format html|json|md -o FILE`, median of --runs, and the file's size.

    .venv/bin/python bench/audit.py                          # both back ends, the issue's sizes
    .venv/bin/python bench/audit.py --only sqlite --records 500 --verify-records 20000 --hosts 200
    .venv/bin/python bench/audit.py --parts report --profile  # and cProfile of each part, in process

Writing 100,000 records or a 1,000-host rollout through the Store API takes minutes on PostgreSQL
(every append is three statements), so by default the logs of parts 2 and 3 are written once, on
SQLite, and PostgreSQL gets the same rows copied in (plus the same key and exported checkpoints):
what is timed there, verify and report, only reads. --write-each writes PostgreSQL's through the
Store API too. Every command is bounded by --timeout and the whole bench by --budget (what is left
over is reported as not run); a report slower than --repeat-under seconds is not run again. The
default run takes about 3.5 minutes on 2 CPUs, most of it writing the 1,000-host rollout.
Temporary folders and the PostgreSQL databases are removed at the end, failure or not.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.audit.signing import init_key  # noqa: E402
from orchestrator.config import load_settings  # noqa: E402
from orchestrator.context import audit_log  # noqa: E402
from orchestrator.model.inventory import HAProxyConfig, NoSnapshots  # noqa: E402
from orchestrator.model.progress import Progress  # noqa: E402
from orchestrator.model.spec import (  # noqa: E402
    ChangeRequest,
    CheckSpec,
    Document,
    HostSpec,
    RolloutSpec,
    SSHSpec,
    StepSpec,
)
from orchestrator.model.states import HostState, RolloutState  # noqa: E402
from orchestrator.store.db import Store  # noqa: E402
from orchestrator.store.samples import COUNTERS, Sample, record_sample  # noqa: E402
from orchestrator.store.schema import ActionRow, AuditCheckpointRow, Base  # noqa: E402

ADMIN_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")
EVERY = 1000  # records between checkpoints (the default ORCH_AUDIT_CHECKPOINT_EVERY)
BATCH = 50  # hosts per batch of the report's rollout
BATCH_SECONDS = 30.0  # how long each batch of that rollout takes
OUT_FOR = 28.0  # seconds of each batch window that its hosts are out of service
SAMPLES = 600  # availability samples, one a second
DETAIL = "from the CLI"
REASON = "CHG-1042: security update of the app, window opened by the change board"
ROLLOUT = "R-BENCH-REPORT"
CLI = Path(sys.executable).with_name("orchestrator")
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


@dataclass
class Figures:
    """One back end's results as the table prints them (already formatted), and what failed."""

    backend: str
    cells: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


# --- where a store lives ---------------------------------------------------------------------------


@dataclass
class Place:
    """One fresh store: its ORCH_HOME (signing key, exported checkpoints, the SQLite file) and URL."""

    backend: str
    home: Path
    url: str

    @property
    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        return {
            **inherited,
            "ORCH_HOME": str(self.home),
            "ORCH_DATABASE_URL": self.url,
            "ORCH_AUDIT_CHECKPOINT_EVERY": str(EVERY),
        }

    @property
    def checkpoints(self) -> Path:
        return load_settings(self.env).audit_folder

    def store(self, clock: Callable[[], float] | None = None) -> Store:
        """The store as the CLI builds it (context.audit_log): checkpoints signed and exported."""
        settings = load_settings(self.env)
        init_key(settings.audit_key_file, settings.audit_origin)  # what `orchestrator audit init` does
        return Store(self.url, audit=audit_log(settings), clock=clock)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    name = f"orch_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_PG, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            # Other work on this machine may restart PostgreSQL meanwhile: wait for it to drop ours.
            deadline = time.monotonic() + 60
            while True:
                admin.dispose()  # a new connection: a restart killed the pooled one
                try:
                    with admin.connect() as conn:
                        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    break
                except OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
    finally:
        admin.dispose()


@contextlib.contextmanager
def place(backend: str, scratch: Path, part: str) -> Iterator[Place]:
    home = Path(tempfile.mkdtemp(prefix=f"{backend}-{part}-", dir=scratch))
    try:
        if backend == "sqlite":
            yield Place(backend, home, f"sqlite:///{home / 'orchestrator.db'}")
        else:
            with postgres_database() as url:
                yield Place(backend, home, url)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def copy_store(source: Place, target: Place) -> None:
    """The same rows in the target's database (migrated by opening it), its key and checkpoints too."""
    from sqlalchemy import create_engine, delete, insert, select, text

    Store(target.url).engine.dispose()  # the schema, by the store's own migrations
    started = time.perf_counter()
    src, dst = create_engine(source.url), create_engine(target.url)
    try:
        with src.connect() as read, dst.begin() as write:
            for table in reversed(Base.metadata.sorted_tables):
                write.execute(delete(table))
            for table in Base.metadata.sorted_tables:
                chunk: list[dict[str, object]] = []
                for row in read.execute(select(table)).mappings():
                    values = dict(row)
                    if table is AuditCheckpointRow.__table__:
                        values["exported"] = str(values["exported"]).replace(
                            str(source.home), str(target.home)
                        )
                    chunk.append(values)
                    if len(chunk) == 2000:
                        write.execute(insert(table), chunk)
                        chunk = []
                if chunk:
                    write.execute(insert(table), chunk)
            for table, column in (("steps", "id"), ("actions", "id")):  # explicit ids: move the sequences
                write.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
                    )
                )
    finally:
        src.dispose()
        dst.dispose()
    shutil.copytree(source.home / "audit", target.home / "audit", dirs_exist_ok=True)
    took = time.perf_counter() - started
    say(f"{target.backend}: the same rows copied from {source.backend} in {took:.1f}s")


@dataclass(frozen=True)
class Budget:
    """What bounds the bench: no command runs longer than ``timeout`` seconds, nothing starts (and
    no command goes on) past ``deadline`` (time.monotonic())."""

    timeout: float
    deadline: float

    def seconds(self) -> float:
        left = min(self.timeout, self.deadline - time.monotonic())
        if left <= 0:
            raise TimeoutError("over the --budget: not run")
        return left


def run_cli(args: list[str], env: dict[str, str], budget: Budget) -> tuple[float, int, str]:
    """Wall clock of the whole process, its exit code (-1: killed at the timeout), its last line."""
    timeout = budget.seconds()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(CLI), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, -1, f"killed after {timeout:g}s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return time.perf_counter() - started, done.returncode, lines[-1] if lines else ""


def profiled(what: Callable[[], object], top: int = 16) -> str:
    """cProfile's own-time top of one call, indented for the output."""
    profile = cProfile.Profile()
    profile.runcall(what)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    total = next((line.strip() for line in lines if "function calls" in line), "")
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join([f"    {total}", *(f"    {line}" for line in lines[start:])])


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.3f}"


# --- 1. the append ---------------------------------------------------------------------------------


def bench_append(where: Place, records: int, profile: bool, figures: Figures) -> None:
    store = where.store()
    rollout_id = "R-BENCH-APPEND"
    store.create_rollout(rollout_spec(rollout_id, 1))
    size = 1  # its rollout.created record

    def action_only() -> None:
        with store.session() as s:
            s.add(
                ActionRow(
                    rollout_id=rollout_id,
                    action="note",
                    actor="bench",
                    at=store.now(),
                    detail=DETAIL,
                    reason=REASON,
                    batch=None,
                )
            )

    def append_only() -> None:
        with store.session() as s:
            store.audit_record(
                s,
                "action",
                rollout_id,
                action="note",
                actor="bench",
                detail=DETAIL,
                reason=REASON,
                batch=None,
            )

    def record_action() -> None:
        store.record_action(rollout_id, "note", "bench", detail=DETAIL, reason=REASON)

    kinds: list[tuple[str, Callable[[], None], bool]] = [
        ("action", action_only, False),
        ("append", append_only, True),
        ("record_action", record_action, True),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    at_checkpoint: list[float] = []
    for _ in range(30):  # warm: the connection, the statement caches
        for _name, call, appends in kinds:
            call()
            size += appends
    say(f"{where.backend}: {records} transactions of each kind, interleaved ...")
    for i in range(records):
        for name, call, appends in kinds[i % 3 :] + kinds[: i % 3]:  # each kind first, second, third in turn
            started = time.perf_counter()
            call()
            took = time.perf_counter() - started
            if appends:
                size += 1
                if size % EVERY == 0:  # this transaction signed and exported a checkpoint
                    at_checkpoint.append(took)
                    continue
            times[name].append(took)
    own = statistics.median(times["record_action"]) - statistics.median(times["action"])
    figures.cells["action"] = ms(times["action"])
    figures.cells["append"] = ms(times["append"])
    figures.cells["record_action"] = ms(times["record_action"])
    figures.cells["own"] = f"{own * 1000:.3f}"
    figures.cells["checkpoint"] = f"{ms(at_checkpoint)} ({len(at_checkpoint)})" if at_checkpoint else "-"
    say(
        f"{where.backend}: median ms: action row only {figures.cells['action']}, bare append "
        f"{figures.cells['append']}, record_action {figures.cells['record_action']}; the audit's own cost "
        f"{figures.cells['own']}; checkpoint transactions {figures.cells['checkpoint']}"
    )
    if profile:
        print(f"  profile of 1,000 record_action calls ({where.backend}):")

        def thousand() -> None:
            for _ in range(1000):
                record_action()

        print(profiled(thousand))
    store.engine.dispose()


# --- 2. verify -------------------------------------------------------------------------------------


def record_fields(i: int) -> tuple[str, dict[str, object]]:
    """What a rollout's records look like: a step started, the step ended, a host's state changed."""
    host = f"web{i // 21 % 1000:04d}"
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    kind = i % 3
    if kind == 0:
        return "step.started", {
            "step_id": i,
            "host": host,
            "step": "update[1]",
            "attempt": 1,
            "detail": "run install",
            "command_sha256": digest,
        }
    if kind == 1:
        return "step.ended", {
            "step_id": i - 1,
            "host": host,
            "step": "update[1]",
            "attempt": 1,
            "outcome": "ok",
            "detail": "run install",
            "exit_code": 0,
            "output_sha256": digest,
        }
    return "host.state", {"host": host, "from": "updating", "to": "checking", "error": ""}


def fill_log(where: Place, count: int, budget: Budget, figures: Figures) -> None:
    """``count`` records through Store.audit_record, EVERY a transaction."""
    store = where.store()
    say(f"{where.backend}: filling a log of {count} records through audit_record, {EVERY} a transaction ...")
    started = time.perf_counter()
    written = 0
    while written < count:
        budget.seconds()
        with store.session() as s:
            for i in range(written, min(count, written + EVERY)):
                kind, fields = record_fields(i)
                store.audit_record(s, kind, f"R{i // 21000}", **fields)
        written = min(count, written + EVERY)
        if written % (20 * EVERY) == 0:
            say(f"{where.backend}:   {written} records")
    fill = time.perf_counter() - started
    store.engine.dispose()
    exported = len(list(where.checkpoints.glob("0*.checkpoint")))
    rate = fill / count * 1000
    say(f"{where.backend}: filled in {fill:.1f}s ({rate:.3f} ms a record), {exported} checkpoints")
    figures.cells["fill"] = f"{rate:.3f}"


def time_verify(where: Place, runs: int, budget: Budget, profile: bool, figures: Figures) -> None:
    walls: list[float] = []
    codes: list[int] = []
    for run in range(runs):
        wall, code, last = run_cli(["audit", "verify"], where.env, budget)
        walls.append(wall)
        codes.append(code)
        say(f"{where.backend}: audit verify run {run + 1}: {wall:.2f}s, exit {code}: {last}")
    exits = ",".join(str(c) for c in sorted(set(codes)))
    figures.cells["verify"] = f"{statistics.median(walls):.2f} (exit {exits})"
    if any(codes):
        figures.failed.append(f"audit verify exited {codes}")
    if profile:
        from orchestrator.app.audit import verifiers, verify_store

        settings = load_settings(where.env)
        store = where.store()
        keys = verifiers(settings, ())
        print(f"  profile of verify_store in this process ({where.backend}):")
        print(profiled(lambda: verify_store(store, settings, (), keys)))
        store.engine.dispose()


# --- 3. the change report --------------------------------------------------------------------------


def rollout_spec(rollout_id: str, hosts: int) -> RolloutSpec:
    names = [f"web{i:04d}" for i in range(hosts)]
    ssh = SSHSpec(
        address="10.0.0.1",
        port=22,
        user="deploy",
        key_file=Path("/etc/orchestrator/id_ed25519"),
        known_hosts=Path("/etc/orchestrator/known_hosts"),
        connect_timeout=5,
    )
    checks = [
        CheckSpec(kind="http", label="GET /health", timeout=5, url="http://{h}:8080/health", contains="ok"),
        CheckSpec(kind="tcp", label="tcp 8080", timeout=5, port=8080),
    ]
    document = Document(path="/srv/playbooks/app-v2.yaml", sha256="ab" * 32, text="steps: []\n")
    return RolloutSpec(
        rollout_id=rollout_id,
        name="app-v2",
        pool="web",
        playbook_path=Path("/srv/playbooks/app-v2.yaml"),
        inventory_path=Path("/srv/inventory.yaml"),
        batches=[names[i : i + BATCH] for i in range(0, hosts, BATCH)],
        drain_timeout=30,
        drain_on_timeout="fail",
        snapshot_enabled=True,
        snapshot_memory=False,
        snapshot_retention="delete_on_success",
        snapshot_timeout=120,
        stabilize_interval=1,
        stabilize_successes=3,
        stabilize_timeout=30,
        on_failure="halt",
        max_unavailable=BATCH,
        loadbalancer=HAProxyConfig(socket=Path("/run/haproxy/admin.sock"), backend="app"),
        hypervisor=NoSnapshots(type="none"),
        hosts={
            h: HostSpec(
                name=h,
                address=f"10.0.{i // 250}.{i % 250 + 1}",
                domain=f"{h}-vm",
                lb_server=h,
                ssh=ssh.model_copy(update={"address": f"10.0.{i // 250}.{i % 250 + 1}"}),
                steps=[
                    StepSpec(
                        kind="upload",
                        label="upload app.tgz",
                        timeout=60,
                        src=Path("/a/app.tgz"),
                        dest="/tmp/a",
                    ),
                    StepSpec(
                        kind="run", label="run install", timeout=300, command="/opt/app/bin/install /tmp/a"
                    ),
                ],
                checks=checks,
                revert_checks=checks[:1],
                snapshot_name=f"orch-{rollout_id}-{h}",
            )
            for i, h in enumerate(names)
        },
        request=ChangeRequest(
            requested_by="alice",
            requested_at=1_760_000_000.0,
            change_ticket="CHG-1042",
            reason="security update of the app",
            playbook=document,
            inventory=document.model_copy(update={"path": "/srv/inventory.yaml"}),
        ),
    )


# (state entered, step opened in it, its detail, seconds into the batch, how long it takes); a None
# state: the host stays where it is (the second update step).
PHASES: list[tuple[HostState | None, str, str, float, float]] = [
    (HostState.DRAINING, "drain", "0 sessions left", 0.0, 4.0),
    (HostState.OUT_OF_POOL, "maint", "", 4.0, 0.5),
    (HostState.SNAPSHOTTING, "snapshot", "orch-snapshot", 5.0, 4.0),
    (HostState.UPDATING, "update[0]", "upload app.tgz", 9.0, 3.0),
    (None, "update[1]", "run install", 12.0, 6.0),
    (HostState.CHECKING, "checks", "GET /health 200 in 0.012s; tcp 8080 open", 18.0, 8.0),
    (HostState.RETURNING, "return", "", 26.0, 2.0),
]


class Clock:
    """The store's clock: the rollout is written in a few seconds but spans its real 10 minutes."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def write_rollout(where: Place, hosts: int, budget: Budget, figures: Figures) -> None:
    """The rollout through the Store API, on a clock that spans its 10 minutes."""
    rollout_id, backend = ROLLOUT, where.backend
    say(f"{backend}: writing a rollout of {hosts} hosts through the Store API ...")
    started = time.perf_counter()
    clock = Clock(1_760_000_100.0)
    store = where.store(clock)
    spec = rollout_spec(rollout_id, hosts)
    t0 = clock.at
    store.create_rollout(spec)
    clock.at = t0 + 1
    store.transition_rollout(rollout_id, RolloutState.RUNNING)
    store.record_action(rollout_id, "start", "alice", detail=DETAIL, reason="CHG-1042 window opened")
    for b, batch in enumerate(spec.batches):
        budget.seconds()
        base = t0 + 2 + b * BATCH_SECONDS
        for state, step, detail, start, length in PHASES:
            ids = []
            for k, host in enumerate(batch):
                clock.at = base + start + k * 0.005
                if state is not None:
                    store.save_host(rollout_id, host, state, Progress())
                command = "/opt/app/bin/install /tmp/a" if step == "update[1]" else ""
                ids.append(store.step_started(rollout_id, host, step, detail, command=command))
            for k, (host, step_id) in enumerate(zip(batch, ids, strict=True)):
                clock.at = base + start + length + k * 0.005
                output = f"installed app 2.0.1 on {host}\n" if step == "update[1]" else ""
                store.step_ended(
                    step_id,
                    "ok",
                    work=length * 0.9,
                    exit_code=0 if step == "update[1]" else None,
                    output_tail=output,
                    output_sha256=hashlib.sha256(output.encode()).hexdigest() if output else "",
                )
        for k, host in enumerate(batch):
            clock.at = base + OUT_FOR + k * 0.005
            store.save_host(rollout_id, host, HostState.SUCCEEDED, Progress())
        if b < len(spec.batches) - 1:
            store.claim_next_batch(rollout_id, b)
        if (b + 1) % 5 == 0:
            say(f"{backend}:   batch {b + 1}/{len(spec.batches)} written")
    clock.at = t0 + 2 + len(spec.batches) * BATCH_SECONDS
    store.finish_rollout(rollout_id, RolloutState.SUCCEEDED, "every host updated")
    write_samples(store, rollout_id, spec, t0 + 2)
    steps = len(store.steps(rollout_id))
    store.engine.dispose()
    took = time.perf_counter() - started
    say(f"{backend}: written in {took:.1f}s ({steps} steps, {SAMPLES} samples)")
    figures.cells["write"] = f"{took:.1f}"


def write_samples(store: Store, rollout_id: str, spec: RolloutSpec, t0: float) -> None:
    """One sample a second, as the sampler keeps them: every server of the pool, its counters growing."""
    rng = random.Random(7)
    names = list(spec.hosts)
    counters = {h: [0] * len(COUNTERS) for h in names}
    for slot in range(SAMPLES):
        at = t0 + slot
        batch = int(slot // BATCH_SECONDS)
        out = (
            set(spec.batches[batch])
            if batch < len(spec.batches) and slot % BATCH_SECONDS < OUT_FOR
            else set()
        )
        for host in rng.sample(names, 3):  # a few errors now and then
            counters[host][rng.randrange(len(COUNTERS))] += 1
        per_server = {
            h: [0 if h in out else 1, 0 if h in out else rng.randrange(40), *counters[h]] for h in names
        }
        sessions = sum(row[1] for row in per_server.values())
        record_sample(
            store, rollout_id, int(at), Sample(at, len(names) - len(out), len(names), sessions, per_server)
        )


def time_reports(
    where: Place, runs: int, budget: Budget, repeat_under: float, profile: bool, figures: Figures
) -> None:
    for form in ("html", "json", "md"):
        output = where.home / f"report.{form}"
        walls: list[float] = []
        codes: list[int] = []
        for run in range(runs):
            output.unlink(missing_ok=True)
            wall, code, last = run_cli(
                ["report", ROLLOUT, "--format", form, "-o", str(output)], where.env, budget
            )
            walls.append(wall)
            codes.append(code)
            said = last if code else "written"
            say(f"{where.backend}: report --format {form} run {run + 1}: {wall:.2f}s, exit {code}: {said}")
            if code != 0 or wall > repeat_under:
                break
        size = output.stat().st_size if output.exists() else 0
        once = "" if len(walls) == runs else f"; {len(walls)} run"
        figures.cells[f"report_{form}"] = (
            f"exit {codes[-1]}"
            if any(codes)
            else f"{statistics.median(walls):.2f} ({size / 1024:,.0f} KiB{once})"
        )
        if any(codes):
            figures.failed.append(f"report --format {form} exited {codes}")
    if profile:
        from orchestrator.app.change_report import build, render

        store = where.store()
        print(f"  profile of the html report's build and render in this process ({where.backend}):")
        print(profiled(lambda: render(build(store, ROLLOUT), "html")))
        store.engine.dispose()


# --- the table -------------------------------------------------------------------------------------

ROWS = [
    ("action", "1. transaction with an action row only (no audit), median ms", ""),
    ("append", "1. transaction with one bare append (audit_record only), median ms", "<= 1 ms"),
    ("record_action", "1. record_action end to end (action row + its record), median ms", ""),
    ("own", "1. the audit's own cost: record_action - action row only, ms", "<= 1 ms"),
    ("checkpoint", "1. a transaction crossing a checkpoint (sign, export), median ms (count)", ""),
    ("fill", "2. filling the log through audit_record, 1,000 a transaction, ms a record", ""),
    ("verify", "2. `orchestrator audit verify`, whole process, median s (exit code)", "<= 5 s"),
    ("write", "3. writing the rollout through the Store API, s", ""),
    ("report_html", "3. `orchestrator report --format html`, whole process, median s (size)", "none stated"),
    ("report_json", "3. `orchestrator report --format json`, whole process, median s (size)", "none stated"),
    ("report_md", "3. `orchestrator report --format md`, whole process, median s (size)", "none stated"),
]


def table(results: list[Figures], args: argparse.Namespace, start: str, loads: str) -> None:
    copied = "" if args.write_each else "; PostgreSQL's stores of 2 and 3 copied from SQLite's"
    print(
        f"\nmachine: {os.cpu_count()} CPUs ({platform.machine()}), Linux {platform.release()}, Python "
        f"{platform.python_version()}; load average {loads}; the CLI's own start (`orchestrator --help`, "
        f"median of 3): {start}"
    )
    print(
        f"sizes: {args.records} transactions of each kind, verify of {args.verify_records:,} records, "
        f"report of {args.hosts:,} hosts, {args.runs} runs{copied}"
    )
    print(f"| figure | {' | '.join(f.backend for f in results)} | target |")
    print(f"|---|{'---|' * len(results)}---|")
    for key, label, target in ROWS:
        cells = [f.cells.get(key, "-") for f in results]
        if any(c != "-" for c in cells):
            print(f"| {label} | {' | '.join(cells)} | {target} |")
    for f in results:
        for failure in f.failed:
            print(f"{f.backend}: FAILED: {failure}")


# --- the run ---------------------------------------------------------------------------------------


def attempt(
    budget: Budget, figures: Figures, what: str, action: Callable[..., object], *args: object
) -> bool:
    """Run one part for one back end; a failure is recorded, and the other parts still run."""
    try:
        budget.seconds()
        action(*args)
        return True
    except Exception as exc:
        say(f"{figures.backend}: {what} FAILED: {type(exc).__name__}: {exc}")
        figures.failed.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")
        return False


def written_part(
    part: str,
    results: dict[str, Figures],
    scratch: Path,
    write_each: bool,
    budget: Budget,
    write: Callable[[Place, Figures], None],
    measure: Callable[[Place, Figures], None],
) -> None:
    """A part whose store is written first (the log to verify, the rollout to report on): written on
    SQLite and measured there, then on PostgreSQL the same rows copied in (or, with --write-each,
    written again through the Store API) and measured."""
    with place("sqlite", scratch, part) as source:
        wrote = False
        if "sqlite" in results or not write_each:
            figures = results.get("sqlite", Figures("sqlite"))
            wrote = attempt(budget, figures, f"{part}: writing", write, source, figures)
            if "sqlite" not in results:
                results["postgresql"].failed += figures.failed
            elif wrote:
                attempt(budget, figures, part, measure, source, figures)
        if "postgresql" not in results:
            return
        figures = results["postgresql"]
        if not (wrote or write_each):
            figures.failed.append(f"{part}: not run (no SQLite store to copy)")
            return

        def on_postgresql() -> None:
            with place("postgresql", scratch, part) as target:
                if write_each:
                    write(target, figures)
                else:
                    copy_store(source, target)
                measure(target, figures)

        attempt(budget, figures, part, on_postgresql)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=BACKENDS)
    parser.add_argument("--parts", nargs="+", choices=["append", "verify", "report"], default=None)
    parser.add_argument("--records", type=int, default=2000, help="transactions of each kind (part 1)")
    parser.add_argument("--verify-records", type=int, default=100_000, help="records in the log (part 2)")
    parser.add_argument("--hosts", type=int, default=1000, help="hosts of the rollout (part 3)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each CLI command (the median)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed one CLI command")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole bench")
    parser.add_argument("--repeat-under", type=float, default=30.0, help="repeat a report only if faster")
    parser.add_argument("--write-each", action="store_true", help="PostgreSQL's logs through the API too")
    parser.add_argument("--profile", action="store_true", help="print cProfile of each part too")
    args = parser.parse_args()
    backends = [args.only] if args.only else list(BACKENDS)
    parts = args.parts or ["append", "verify", "report"]
    results = {backend: Figures(backend) for backend in backends}
    budget = Budget(args.timeout, STARTED + args.budget)
    scratch = Path(tempfile.mkdtemp(prefix="orch-bench-audit-"))
    say(f"{os.cpu_count()} CPUs; temporary files in {scratch}")
    load_before = os.getloadavg()[0]
    starts = [run_cli(["--help"], dict(os.environ), budget)[0] for _ in range(3)]
    start = f"{statistics.median(starts):.2f} s"
    try:
        if "append" in parts:
            for figures in results.values():

                def append(figures: Figures = figures) -> None:
                    with place(figures.backend, scratch, "append") as where:
                        bench_append(where, args.records, args.profile, figures)

                attempt(budget, figures, "append", append)
        if "verify" in parts:
            written_part(
                "verify",
                results,
                scratch,
                args.write_each,
                budget,
                lambda where, figures: fill_log(where, args.verify_records, budget, figures),
                lambda where, figures: time_verify(where, args.runs, budget, args.profile, figures),
            )
        if "report" in parts:
            written_part(
                "report",
                results,
                scratch,
                args.write_each,
                budget,
                lambda where, figures: write_rollout(where, args.hosts, budget, figures),
                lambda where, figures: time_reports(
                    where, args.runs, budget, args.repeat_under, args.profile, figures
                ),
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table(
        list(results.values()),
        args,
        start,
        f"{load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
    )
    say("done")
    return 1 if any(f.failed for f in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
