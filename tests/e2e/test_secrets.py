"""Planted secrets: a real rollout on the loopback farm whose update command, check URL, check header and
a command that prints the secret all use secrets; then every byte the orchestrator wrote is searched.

The secrets are random per run, so a hit can only come from this run. A positive control shows the
search can find them: the values did reach the hosts (a file the update wrote, the headers a check
server received), so "zero occurrences" means kept out, not never used.
"""

from __future__ import annotations

import base64
import http.server
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.lab.sshd import free_port
from orchestrator.store.db import Store
from tests.e2e.helpers import PLAYBOOKS, RABBITMQ, cli, forget_queue, report

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Recorder(http.server.BaseHTTPRequestHandler):
    """A health endpoint that keeps the credentials it was sent, to prove the secrets were used."""

    seen: list[tuple[str, str, str]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(
            (self.path, self.headers.get("Authorization", ""), self.headers.get("X-Api-Token", ""))
        )
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    port = free_port("127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[LoopbackFarm]:
    farm = LoopbackFarm(tmp_path / "farm", hosts=2)
    farm.start()
    try:
        yield farm
    finally:
        farm.stop()


def planted() -> dict[str, str]:
    # Characters a shell or a URL treats specially: quoting and encoding must carry them whole.
    return {
        "password": f"pw-{secrets.token_hex(6)}'$(x);&\"",
        "token": f"tok-{secrets.token_hex(8)}",
        "monitor": f"mon-{secrets.token_hex(6)}@:/",
    }


def write_inputs(farm: LoopbackFarm, tmp: Path, values: dict[str, str], port: int, *, broken: bool) -> Path:
    token_file = tmp / "secrets" / "api-token"
    token_file.parent.mkdir(mode=0o700)
    token_file.write_text(values["token"] + "\n")
    inventory = farm.inventory_data()
    inventory["secrets"] = {
        "db_password": {"env": "ORCH_E2E_DB_PASSWORD"},
        "api_token": {"file": str(token_file)},
    }
    pool = inventory["pools"]["loopback"]  # type: ignore[index]
    pool["secrets"] = {"monitor_password": {"env": "ORCH_E2E_MONITOR_PASSWORD"}}
    farm.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))
    book = yaml.safe_load((PLAYBOOKS / "loopback-v2.yaml").read_text())
    book["update"].insert(
        1,
        {
            "run": "printf %s {{ secrets.db_password }} > {{ vars.app_dir }}/../got-password && "
            "echo the password is {{ secrets.db_password }} and the token {{ secrets.api_token }}",
            "timeout": "10s",
        },
    )
    if broken:  # a command that times out: its message wraps the command, secret included
        book["update"].insert(2, {"run": "echo {{ secrets.db_password }}; sleep 30", "timeout": "1s"})
    book["checks"].append(
        {
            "http": {
                "url": f"http://monitor:{{{{ secrets.monitor_password }}}}@127.0.0.1:{port}/health"
                "?token={{ secrets.api_token }}",
                "headers": {"X-Api-Token": "{{ secrets.api_token }}"},
                "timeout": "2s",
            }
        }
    )
    book["checks"].append(
        {"command": {"run": "echo checking with {{ secrets.db_password }}", "timeout": "5s"}}
    )
    playbook = tmp / ("broken.yaml" if broken else "planted.yaml")
    playbook.write_text(yaml.safe_dump(book, sort_keys=False))
    return playbook


def occurrences(blobs: dict[str, bytes], values: dict[str, str]) -> list[str]:
    forms = set()
    for value in values.values():
        forms |= {value, value[4:], urllib.parse.quote(value, safe="")}  # raw, its random part, encoded
    return [f"{where}: {form!r}" for where, blob in blobs.items() for form in forms if form.encode() in blob]


def written(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_planted_secrets_are_used_and_never_written(
    farm: LoopbackFarm, recorder: int, tmp_path: Path
) -> None:
    values = planted()
    home = tmp_path / "home"
    env = {
        "ORCH_HOME": str(home),
        "ORCH_DATABASE_URL": f"sqlite:///{home / 'orchestrator.db'}",
        "ORCH_E2E_DB_PASSWORD": values["password"],
        "ORCH_E2E_MONITOR_PASSWORD": values["monitor"],
        "ORCH_LOG_LEVEL": "DEBUG",
    }
    Recorder.seen.clear()
    good = write_inputs(farm, tmp_path, values, recorder, broken=False)
    plan = cli(["plan", str(good), "-i", str(farm.inventory)], {**env, "ORCH_BROKER_URL": ""})
    assert plan.returncode == 0, plan.stderr
    assert "***" in plan.stdout

    # 1. In-process worker, logs at DEBUG on stderr.
    done = cli(["run", str(good), "-i", str(farm.inventory)], {**env, "ORCH_BROKER_URL": ""}, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = {"plan": plan.stdout + plan.stderr, "run (in process)": done.stdout + done.stderr}

    # 2. A separate worker over RabbitMQ, at DEBUG, serving its metrics; a rollout that fails on a
    #    command timing out (its reason and the journal carry the wrapped command).
    farm.reset()
    (tmp_path / "b").mkdir()
    broken = write_inputs(farm, tmp_path / "b", values, recorder, broken=True)
    queue = f"e2e-secrets-{os.getpid()}-{time.time_ns()}"
    broker_env = {**env, "ORCH_BROKER_URL": RABBITMQ, "ORCH_QUEUE": queue}
    metrics_port = free_port("127.0.0.1")
    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "DEBUG",
                "--metrics-port",
                str(metrics_port),
            ],
            env={**os.environ, **broker_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            failed = cli(["run", str(broken), "-i", str(farm.inventory)], broker_env, timeout=180)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
            live_store = written(home)  # while the worker holds the store: -wal and -shm are there

        finally:
            worker.terminate()
            worker.wait(timeout=30)
            forget_queue(queue)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "did not finish within 1 s" in failed.stdout, failed.stdout
    rollout_id = failed.stdout.split("rollout ", 1)[1].split(":", 1)[0]
    status = cli(["status", rollout_id], {**env, "ORCH_BROKER_URL": ""})
    history = cli(["history"], {**env, "ORCH_BROKER_URL": ""})
    assert status.returncode == 0 and history.returncode == 0, status.stderr + history.stderr
    outputs |= {
        "run (worker)": failed.stdout + failed.stderr,
        "status": status.stdout + status.stderr,
        "history": history.stdout + history.stderr,
    }

    # Positive control: the values reached the hosts and the check server, whole.
    assert (farm.hosts[0].app_dir.parent / "got-password").read_text() == values["password"]
    basic = "Basic " + base64.b64encode(f"monitor:{values['monitor']}".encode()).decode()
    assert (f"/health?token={values['token']}", basic, values["token"]) in Recorder.seen
    assert any(p.endswith("-wal") for p in live_store), list(live_store)
    blobs = {f"{p} (live)": b for p, b in live_store.items()}
    blobs |= {**written(home), str(worker_log): worker_log.read_bytes(), "metrics": metrics}
    blobs |= {name: text.encode() for name, text in outputs.items()}
    assert any(p.endswith("orchestrator.db") for p in blobs), list(blobs)
    planted_control = {"control": f"x {values['password']} y".encode()}
    assert occurrences(planted_control, values), "the search must find a planted value"
    # What the commands printed was kept, with the values masked: redacted, not dropped.
    first = done.stdout.split("rollout ", 1)[1].split(":", 1)[0]
    journal = Store(env["ORCH_DATABASE_URL"]).steps(first)
    assert any("the password is *** and the token ***" in s.output_tail for s in journal), journal
    assert any("checking with ***" in s.detail for s in journal if s.step == "checks"), journal

    found = occurrences(blobs, values)
    sizes = {k: len(v) for k, v in blobs.items()}
    report("planted secrets", f"searched {len(blobs)} blobs, {sum(sizes.values())} bytes: {sizes}")
    assert found == [], found
    # Files the store wrote are private.
    for path in home.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {mode:o}"
