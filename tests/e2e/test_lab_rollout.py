"""End to end on real VMs: QEMU guests under libvirtd behind HAProxy, live client load, capacity sampled
from HAProxy every 100 ms, and the negative control in the same harness. Runs after every faster test.

The tests share one lab (booted once for the module) and run in order: v1 -> v2, then the broken v3 on
top of v2, then the no-drain control.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator import context
from orchestrator.adapters.hypervisors.libvirt import LibvirtSnapshots
from orchestrator.adapters.remote.ssh import SSHRemote
from orchestrator.app.submit import load_spec, new_rollout_id
from orchestrator.config import load_settings
from orchestrator.engine.wiring import ssh_target
from orchestrator.lab import lab as labmod
from orchestrator.lab.measure import Measured, naive_update, under_load
from orchestrator.model.spec import RolloutSpec
from orchestrator.model.states import HostState, RolloutState
from orchestrator.workflows.worker import execute
from tests.e2e.helpers import PLAYBOOKS, report

pytestmark = [pytest.mark.e2e, pytest.mark.vm]

VMS = 4


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.LabInfo]:
    info = labmod.up(VMS)
    try:
        yield info
    finally:
        labmod.down()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORCH_BROKER_URL", raising=False)
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)


def socket_of(lab: labmod.LabInfo) -> Path:
    inventory = yaml.safe_load(lab.inventory.read_text())
    return Path(inventory["pools"]["lab"]["loadbalancer"]["socket"])


def on_vm(spec: RolloutSpec, host: str, command: str) -> str:
    remote = SSHRemote.connect(ssh_target(spec.hosts[host]))
    try:
        result = remote.run(command, timeout=20)
        assert result.ok, result
        return result.stdout.strip()
    finally:
        remote.close()


def rollout(
    lab: labmod.LabInfo, playbook: Path
) -> tuple[Measured, RolloutState, dict[str, HostState], RolloutSpec]:
    spec = load_spec(playbook, lab.inventory, rollout_id=new_rollout_id())
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        outcome = execute(context.build(load_settings()), spec, lambda _line: None)
        final, hosts, steps = outcome.rollout, outcome.hosts, outcome.steps
    measured = figures()
    timing = ", ".join(f"{s.host}:{s.step}={(s.ended_at or s.started_at) - s.started_at:.2f}s" for s in steps)
    report(
        playbook.name,
        f"{final.state.value}: {final.reason}; {measured.load.summary()}; "
        f"min in service {measured.min_in_service}/{VMS}; rollout {measured.seconds:.1f}s",
    )
    report(f"{playbook.name} steps", timing)
    return measured, final.state, {h.name: h.state for h in hosts}, spec


def test_v1_to_v2_on_vms_loses_no_request(lab: labmod.LabInfo, env: None) -> None:
    measured, state, hosts, spec = rollout(lab, PLAYBOOKS / "lab-v2.yaml")
    assert state is RolloutState.SUCCEEDED
    assert set(hosts.values()) == {HostState.SUCCEEDED}
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert measured.min_in_service >= VMS - 1  # batches of one
    for host in spec.hosts:
        assert "version 2" in on_vm(spec, host, "/app/bin/appctl status")
    # retention delete_on_success: no snapshot left behind
    snapshots = LibvirtSnapshots(lab.uri)
    assert all(snapshots.list(h.domain) == [] for h in spec.hosts.values())


def test_broken_v3_is_reverted_from_the_snapshot_and_halts(lab: labmod.LabInfo, env: None) -> None:
    spec = load_spec(PLAYBOOKS / "lab-v3-broken.yaml", lab.inventory)
    first = spec.batches[0][0]
    pid_before = on_vm(spec, first, "cat /app/app.pid")
    measured, state, hosts, spec = rollout(lab, PLAYBOOKS / "lab-v3-broken.yaml")
    assert state is RolloutState.HALTED
    assert hosts[first] is HostState.ROLLED_BACK
    assert all(hosts[h] is HostState.SKIPPED for h in spec.host_order()[1:]), hosts
    assert measured.load.failed == 0, measured.load.failures()[:5]
    assert measured.min_in_service >= VMS - 1
    # Restored by the snapshot, not reinstalled: release 3 is gone from the disk and the very process
    # that ran before the update (same pid, memory restored) serves again.
    assert "version 2" in on_vm(spec, first, "/app/bin/appctl status")
    assert on_vm(spec, first, "ls /app/releases").split() == ["1", "2"]
    assert on_vm(spec, first, "cat /app/app.pid") == pid_before
    for other in spec.host_order()[1:]:
        assert "version 2" in on_vm(spec, other, "/app/bin/appctl status")


def test_negative_control_without_draining_sees_failures(lab: labmod.LabInfo, env: None) -> None:
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        naive_update(lab.inventory, PLAYBOOKS / "lab-v2.yaml")
    measured = figures()
    report("lab negative control, no drain", measured.load.summary())
    assert measured.load.failed > 0, "the harness must be able to see downtime"
