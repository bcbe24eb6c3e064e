"""What a store restart, or a network team reloading HAProxy, costs a whole `orchestrator demo --loopback`,
measured as its user sees it: the process's exit code, the client requests its load generator saw fail
(beside its own negative control, act 3, in the same harness), and HAProxy's view of the servers,
sampled by this script from the farm's runtime socket every 100 ms.

    .venv/bin/python bench/interruptions.py                          # both scenarios, three moments each
    .venv/bin/python bench/interruptions.py --only postgresql --at 0.5 1.5 2.5
    .venv/bin/python bench/interruptions.py --only reloads --at 0 1 2

postgresql: the store on a database of its own on the local PostgreSQL (made and dropped here), and
    `pg_ctlcluster VERSION main restart` AT seconds after the first rollout printed its id. The time
    without a server is what this script measured around that command.
reloads: the default SQLite store; from AT seconds after the first rollout printed its id until the
    second one (the broken release, reverted) ended, the farm's HAProxy reloaded every 250 ms the way a
    careful ExecReload does it: the server states saved to the state file, then
    `haproxy -f CFG -D -p PIDFILE -x SOCKET -sf OLDPID`.

Each run is bounded (--timeout, default 300 s) and leaves PostgreSQL running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RELOAD_EVERY = 0.25
SAMPLE_EVERY = 0.1


@dataclass
class Sample:
    at: float  # time.monotonic()
    in_service: dict[str, bool]  # server -> UP and no admin flag


@dataclass
class Run:
    scenario: str
    at: float
    exit_code: int | None = None
    seconds: float = 0.0
    figures: dict[str, tuple[int, int]] = field(default_factory=dict)  # act -> (requests, failed)
    fault: str = ""
    act_ends: dict[str, Sample | None] = field(default_factory=dict)  # act -> HAProxy's last look
    lowest_in_service: int | None = None
    outage_lines: list[str] = field(default_factory=list)


def ask(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def in_service(state_text: str) -> dict[str, bool]:
    """From `show servers state`: each server UP (op state 2) with no admin flag set."""
    lines = state_text.splitlines()
    header = next((ln[2:].split() for ln in lines if ln.startswith("# be_id")), None)
    if header is None:
        return {}
    name, op, admin = (header.index(c) for c in ("srv_name", "srv_op_state", "srv_admin_state"))
    result = {}
    for line in lines:
        cols = line.split()
        if line.startswith("#") or len(cols) <= max(name, op, admin):
            continue
        result[cols[name]] = cols[op] == "2" and cols[admin] == "0"
    return result


class Sampler:
    """HAProxy's own view of the servers, looked at every 100 ms over the runtime socket."""

    def __init__(self) -> None:
        self.socket: Path | None = None
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            if self.socket is None:
                continue
            with contextlib.suppress(OSError):  # between two processes of a reload, or at teardown
                view = in_service(ask(self.socket, "show servers state"))
                if view:
                    self.samples.append(Sample(time.monotonic(), view))

    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def pg_restart() -> float:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.monotonic() - started


def reload_haproxy(workdir: Path) -> None:
    """One reload of the demo farm's HAProxy from outside the orchestrator, as a network team does."""
    sock, pidfile, config = workdir / "haproxy.sock", workdir / "haproxy.pid", workdir / "haproxy.cfg"
    old = pidfile.read_text().split()[0]
    partial = workdir / "server-state.partial"
    partial.write_text(ask(sock, "show servers state"))
    partial.replace(workdir / "server-state")
    subprocess.run(
        ["haproxy", "-f", str(config), "-D", "-p", str(pidfile), "-x", str(sock), "-sf", old],
        check=True,
        capture_output=True,
        timeout=10,
    )


@contextlib.contextmanager
def database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"orch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        deadline = time.monotonic() + 60
        while True:
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        admin.dispose()


ACT_RULES = {
    "1. rolling update": "v1 -> v2",
    "2. broken release": "v3 broken",
    "3. negative control": "no drain",
}
TABLE_ROW = re.compile(r"^│\s*(v1 -> v2|v3 broken|no drain)\s*│\s*(\d+)\s*│\s*(\d+)\s*│")
FARM_DIR = re.compile(r"behind HAProxy in (\S+) \.\.\.")


def demo(run: Run, env: dict[str, str], timeout: float, log: Path) -> None:
    sampler = Sampler()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "demo", "--loopback"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    fault: threading.Thread | None = None
    act_one_over = threading.Event()
    rollouts_over = threading.Event()
    act: str | None = None
    workdir: Path | None = None
    steps: list[str] = []  # the step lines printed so far: where the rollout was when the fault came
    with log.open("w") as out:
        for line in proc.stdout:
            out.write(line)
            if (m := FARM_DIR.search(line)) is not None:
                workdir = Path(m.group(1)) / "farm" / "haproxy"
                sampler.socket = workdir / "haproxy.sock"
            for rule, name in ACT_RULES.items():
                if rule in line:
                    if act is not None:
                        run.act_ends[act] = sampler.last()
                    act = name
                    if name != "v1 -> v2":
                        act_one_over.set()
                    if name == "no drain":
                        rollouts_over.set()
            if "summary" in line and "─" in line and act is not None:
                run.act_ends[act] = sampler.last()
            if "store" in line and ("unavailable" in line or "answers again" in line or "PAUSED" in line):
                run.outage_lines.append(line.strip())
            if line.startswith("  host"):
                steps.append(" ".join(line.split()[:3]))
            if (m := TABLE_ROW.match(line)) is not None:
                run.figures[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            if fault is None and act == "v1 -> v2" and line.startswith("rollout ") and workdir is not None:
                fault = threading.Thread(
                    target=inject, args=(run, workdir, act_one_over, rollouts_over, steps), daemon=True
                )
                fault.start()
    run.exit_code = proc.wait()
    killer.cancel()
    run.seconds = time.monotonic() - started
    act_one_over.set()
    rollouts_over.set()
    if fault is not None:
        fault.join(30)
    sampler.stop()
    end_of_one = run.act_ends.get("v1 -> v2")
    one = [s for s in sampler.samples if end_of_one is not None and s.at <= end_of_one.at]
    if one:
        run.lowest_in_service = min(sum(s.in_service.values()) for s in one)


def inject(
    run: Run,
    workdir: Path,
    act_one_over: threading.Event,
    rollouts_over: threading.Event,
    steps: list[str],
) -> None:
    if act_one_over.wait(run.at):
        run.fault = "act 1 ended before the fault"
        return
    after = f"after {steps[-1]}" if steps else "before the first step ended"
    if run.scenario == "postgresql":
        run.fault = f"PostgreSQL restarted {after}: {pg_restart():.1f}s without a server"
        return
    reloads, failed = 0, 0
    first = time.monotonic()
    while not rollouts_over.is_set():
        try:
            reload_haproxy(workdir)
            reloads += 1
        except (OSError, subprocess.SubprocessError):
            failed += 1
        rollouts_over.wait(RELOAD_EVERY)
    run.fault = f"from {after}: {reloads} reloads over {time.monotonic() - first:.1f}s" + (
        f" ({failed} refused)" if failed else ""
    )


def row(run: Run) -> str:
    def figures(act: str) -> str:
        sent, failed = run.figures.get(act, (-1, -1))
        return f"{sent}/{failed}"

    def up(act: str) -> str:
        sample = run.act_ends.get(act)
        if sample is None:
            return "?"
        return (
            "all UP"
            if all(sample.in_service.values())
            else "NOT " + ",".join(s for s, ok in sample.in_service.items() if not ok)
        )

    return (
        f"| {run.scenario} | {run.at:g} s | {run.fault} | {run.exit_code} | {figures('v1 -> v2')} "
        f"| {figures('v3 broken')} | {figures('no drain')} | {run.lowest_in_service} "
        f"| {up('v1 -> v2')} / {up('v3 broken')} | {run.seconds:.1f} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["postgresql", "reloads"])
    # The first rollout of the loopback demo takes about 3.5 s: these moments fall inside it.
    parser.add_argument("--at", type=float, nargs="+", default=[0.5, 1.5, 2.5])
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    scenarios = [args.only] if args.only else ["postgresql", "reloads"]
    runs: list[Run] = []
    logs = Path(tempfile.mkdtemp(prefix="orch-bench-interruptions-"))
    for scenario in scenarios:
        for at in args.at:
            run = Run(scenario, at)
            home = logs / f"{scenario}-{at:g}"
            home.mkdir()
            env = {**os.environ, "ORCH_HOME": str(home), "COLUMNS": "200"}
            env.pop("ORCH_BROKER_URL", None)
            env.pop("ORCH_DATABASE_URL", None)
            log = home / "demo.log"
            if scenario == "postgresql":
                with database() as url:
                    demo(run, {**env, "ORCH_DATABASE_URL": url}, args.timeout, log)
            else:
                demo(run, env, args.timeout, log)
            runs.append(run)
            print(row(run), flush=True)
            for line in run.outage_lines:
                print(f"    {line}")
            for line in log.read_text().splitlines():
                if "failed client requests:" in line or line.startswith("  +"):
                    print(f"    {line.strip()}")
    print(f"\nlogs: {logs}")
    print(
        "| scenario | fault at | fault | exit | act 1 requests/failed | act 2 requests/failed "
        "| control requests/failed | lowest in service, act 1 | HAProxy at end of act 1 / act 2 "
        "| whole demo |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))
    good = all(
        r.exit_code == 0
        and r.figures.get("v1 -> v2", (0, 1))[1] == 0
        and r.figures.get("v3 broken", (0, 1))[1] == 0
        and all(
            (end := r.act_ends.get(act)) is not None and all(end.in_service.values())
            for act in ("v1 -> v2", "v3 broken")
        )
        for r in runs
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
