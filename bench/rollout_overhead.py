"""Orchestration overhead of a real rollout: wall time minus the time the steps' own work needs.

    .venv/bin/python bench/rollout_overhead.py                     # loopback farm, 4 hosts, in-process worker
    .venv/bin/python bench/rollout_overhead.py --hosts 8 --runs 3
    .venv/bin/python bench/rollout_overhead.py --inventory /var/lib/orchestrator-lab/inventory.yaml \
        --playbook playbooks/lab-v2.yaml       # the VM lab, after `orchestrator lab up`
    ORCH_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// ...         # through RabbitMQ (start a worker first)

A step's own work is what the journal records as `work`: time inside adapter calls (HAProxy commands,
snapshot, SSH commands and uploads, health probes) plus the waits the policy itself asks for (polls
while HAProxy still reports sessions or not-yet-UP, the stabilisation interval). Everything else
(scheduling ticks, the store, gaps between steps) is overhead. Per host: from its first step's start to
its last step's end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator import context  # noqa: E402
from orchestrator.app.submit import load_spec, new_rollout_id  # noqa: E402
from orchestrator.config import load_settings  # noqa: E402
from orchestrator.store.db import Step  # noqa: E402
from orchestrator.workflows.worker import execute  # noqa: E402


def host_figures(steps: list[Step]) -> dict[str, dict[str, float]]:
    by_host: dict[str, list[Step]] = {}
    for step in steps:
        by_host.setdefault(step.host, []).append(step)
    result = {}
    for host, mine in by_host.items():
        start = min(s.started_at for s in mine)
        end = max(s.ended_at or s.started_at for s in mine)
        work = sum(s.work for s in mine)
        result[host] = {"wall": end - start, "work": work, "overhead": end - start - work}
    return result


def print_run(steps: list[Step]) -> dict[str, dict[str, float]]:
    print(f"  {'host':<8} {'step':<12} {'wall s':>8} {'work s':>8} {'overhead s':>10}")
    for step in steps:
        wall = (step.ended_at or step.started_at) - step.started_at
        print(f"  {step.host:<8} {step.step:<12} {wall:8.3f} {step.work:8.3f} {wall - step.work:10.3f}")
    figures = host_figures(steps)
    for host, f in figures.items():
        print(f"  {host:<8} {'TOTAL':<12} {f['wall']:8.3f} {f['work']:8.3f} {f['overhead']:10.3f}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--inventory", type=Path)
    parser.add_argument("--playbook", type=Path, default=ROOT / "playbooks" / "loopback-v2.yaml")
    args = parser.parse_args()
    os.environ.setdefault("ORCH_HOME", tempfile.mkdtemp(prefix="orch-bench-"))
    settings = load_settings()

    farm = None
    if args.inventory is None:
        from orchestrator.lab.loopback import LoopbackFarm

        farm = LoopbackFarm(Path(tempfile.mkdtemp(prefix="orch-bench-farm-")), hosts=args.hosts)
        farm.start()
        inventory = farm.inventory
    else:
        inventory = args.inventory
    overheads: list[float] = []
    walls: list[float] = []
    rollout_overheads: list[float] = []
    try:
        for run in range(1, args.runs + 1):
            if farm is not None and run > 1:
                farm.reset()
            spec = load_spec(args.playbook, inventory, rollout_id=new_rollout_id())
            started = time.monotonic()
            outcome = execute(context.build(settings), spec, lambda _line: None)
            final, steps = outcome.rollout, outcome.steps
            print(f"run {run}: {final.state.value} in {time.monotonic() - started:.2f}s ({final.reason})")
            figures = print_run(steps)
            overheads += [f["overhead"] for f in figures.values()]
            # Between batches too: first step's start to last step's end, minus all work, per host.
            span = max(s.ended_at or s.started_at for s in steps) - min(s.started_at for s in steps)
            rollout_overheads.append((span - sum(s.work for s in steps)) / len(figures))
            walls += [f["wall"] for f in figures.values()]
    finally:
        if farm is not None:
            farm.remove()
    print(f"\nhosts measured: {len(overheads)}")
    print(
        f"median per host: wall {statistics.median(walls):.3f}s, overhead {statistics.median(overheads):.3f}s"
    )
    print(f"overhead / wall (all hosts): {sum(overheads) / sum(walls):.3f}")
    print(
        f"rollout overhead per host, gaps between batches included (median of runs): "
        f"{statistics.median(rollout_overheads):.3f}s"
    )
    print("target: overhead <= 0.150 s per host (a tuned Ansible play: ~1.8 s per host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
