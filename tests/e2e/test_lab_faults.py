"""Faults on the VM lab's hypervisor and guests, with real processes: libvirtd stopped (SIGSTOP) before
and after a snapshot, a guest suspended mid-update, a guest's network cut mid-check. Each ends with every
server in the pool on a known version, no journal row left running, and the outage in the journal.

The CLI runs as a user runs it (in-process worker), under live client load through HAProxy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab import lab as labmod
from orchestrator.lab import network
from orchestrator.lab.measure import under_load
from orchestrator.model.states import HostState, PauseCause, RolloutState
from orchestrator.store.db import Store
from tests.e2e.helpers import PLAYBOOKS, Proc, orchestrator, report, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.vm]

VMS = 4
H = HostState


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.LabInfo]:
    info = labmod.up(VMS)
    try:
        yield info
    finally:
        labmod.down()


def libvirtd_pid(lab: labmod.LabInfo) -> int:
    return int((lab.lab_dir / "libvirt" / "libvirtd.pid").read_text().split()[0])


def inventory(lab: labmod.LabInfo, tmp: Path, *, hypervisor_timeout: str = "20s") -> Path:
    """The lab's inventory with a short bound on libvirt calls, so a stopped libvirtd is seen quickly."""
    data = yaml.safe_load(lab.inventory.read_text())
    data["pools"]["lab"]["hypervisor"]["timeout"] = hypervisor_timeout
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def playbook(tmp: Path, source: str, *, slow: float = 0, step_timeout: str = "60s") -> Path:
    """A lab playbook (paths made absolute), optionally with a slow first update step."""
    book = yaml.safe_load((PLAYBOOKS / source).read_text())
    for step in book["update"]:
        if "upload" in step:
            step["upload"]["src"] = str(PLAYBOOKS / step["upload"]["src"])
        if "run" in step:
            step["timeout"] = step_timeout
    if slow:
        book["update"].insert(0, {"run": f"sleep {slow:g}", "timeout": step_timeout})
    book["strategy"]["batches"] = [1]
    path = tmp / f"faults-{source}"
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


def env_for(tmp: Path) -> dict[str, str]:
    return {
        "ORCH_HOME": str(tmp / "home"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp / 'orch.db'}",
        "ORCH_BROKER_URL": "",
        "ORCH_RECONCILE_EVERY": "1",
    }


def socket_of(lab: labmod.LabInfo) -> Path:
    data = yaml.safe_load(lab.inventory.read_text())
    return Path(data["pools"]["lab"]["loadbalancer"]["socket"])


def state_of(store: Store, host: str) -> H | None:
    rollouts = store.rollouts()
    return store.host(rollouts[0].id, host).state if rollouts else None


def all_in_service(lab: labmod.LabInfo) -> bool:
    from orchestrator.adapters.loadbalancers.haproxy import HAProxy

    servers = HAProxy(socket=socket_of(lab), backend=labmod.BACKEND).servers()
    return all(s.up_after_check for s in servers)


def slow_step_running(store: Store, host: str) -> bool:
    """The journal has the host's update[0] (playbook's slow command) started and not ended."""
    rollouts = store.rollouts()
    steps = store.steps(rollouts[0].id) if rollouts else []
    return any(s.host == host and s.step == "update[0]" and s.outcome == "running" for s in steps)


def finish(run: Proc, timeout: float) -> tuple[int, str]:
    code = run.wait(timeout)
    return code, run.output()


def no_step_left_running(store: Store, rollout_id: str) -> None:
    left = [s for s in store.steps(rollout_id) if s.ended_at is None]
    assert not left, left


def test_libvirtd_stopped_before_the_snapshot_puts_the_vm_back_and_pauses_until_it_answers(
    lab: labmod.LabInfo, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    first = lab.hosts[0].name
    pid = libvirtd_pid(lab)
    args = ["run", str(playbook(tmp_path, "lab-v2.yaml")), "-i", str(inventory(lab, tmp_path))]
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        run = orchestrator(args, env, tmp_path / "run.log")
        try:
            # from draining on, the next libvirt call is the snapshot: stopped now, it cannot exist yet
            wait_for(
                lambda: state_of(store, first) in (H.DRAINING, H.OUT_OF_POOL) or None,
                60,
                f"{first} draining",
                0.005,
            )
            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            rollout_id = store.rollouts()[0].id
            wait_for(
                lambda: (
                    (r := store.rollout(rollout_id)) is not None and r.pause_cause is PauseCause.HYPERVISOR
                ),
                120,
                "the rollout paused for the hypervisor",
                0.2,
            )
            paused_after = time.monotonic() - stopped
            assert store.host(rollout_id, first).state is H.PENDING  # back, untouched
            assert all_in_service(lab)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- the run so far:\n{run.output()[-4000:]}") from None
        finally:
            os.kill(pid, signal.SIGCONT)
        code, output = finish(run, 300)
    measured = figures()
    report(
        "libvirtd stopped before the snapshot", f"paused after {paused_after:.1f}s; {measured.load.summary()}"
    )
    assert code == 0, output
    assert measured.load.failed == 0, measured.load.failures()[:5]
    rollout = store.rollout(rollout_id)
    assert rollout is not None and rollout.state is RolloutState.SUCCEEDED
    snapshot_rows = [s for s in store.steps(rollout_id) if s.host == first and s.step == "snapshot"]
    assert snapshot_rows[0].outcome == "held" and "does not answer" in snapshot_rows[0].detail
    no_step_left_running(store, rollout_id)
    assert all_in_service(lab)


def test_libvirtd_stopped_during_a_revert_holds_the_vm_out_until_it_answers(
    lab: labmod.LabInfo, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    first = lab.hosts[0].name
    pid = libvirtd_pid(lab)
    args = ["run", str(playbook(tmp_path, "lab-v3-broken.yaml")), "-i", str(inventory(lab, tmp_path))]
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        run = orchestrator(args, env, tmp_path / "run.log")
        try:
            wait_for(lambda: state_of(store, first) is H.CHECKING or None, 120, f"{first} checking v3", 0.01)
            os.kill(pid, signal.SIGSTOP)
            rollout_id = store.rollouts()[0].id
            wait_for(
                lambda: (
                    (r := store.rollout(rollout_id)) is not None and r.pause_cause is PauseCause.HYPERVISOR
                ),
                180,
                "the rollout paused while the revert waits for the hypervisor",
                0.2,
            )
            held = store.host(rollout_id, first)
            assert held.state is H.REVERTING and held.progress.blocked_by == "hypervisor", held
            assert not all_in_service(lab)  # the broken VM stays out while it cannot be reverted
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- the run so far:\n{run.output()[-4000:]}") from None
        finally:
            os.kill(pid, signal.SIGCONT)
        code, output = finish(run, 300)
    measured = figures()
    report("libvirtd stopped during the revert", measured.load.summary())
    assert code == 1, output  # the broken release halts the rollout, as without the outage
    assert store.host(rollout_id, first).state is H.ROLLED_BACK
    assert measured.load.failed == 0, measured.load.failures()[:5]
    no_step_left_running(store, rollout_id)
    assert all_in_service(lab)


def test_a_guest_suspended_mid_update_is_reverted_by_the_hypervisor(
    lab: labmod.LabInfo, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    first = lab.hosts[0]
    book = playbook(tmp_path, "lab-v2.yaml", slow=30, step_timeout="10s")
    args = ["run", str(book), "-i", str(inventory(lab, tmp_path))]
    virsh = ["virsh", "-c", lab.uri]
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        run = orchestrator(args, env, tmp_path / "run.log")
        wait_for(lambda: slow_step_running(store, first.name), 120, f"{first.name}'s slow update[0]", 0.01)
        subprocess.run([*virsh, "suspend", first.domain], check=True, capture_output=True, timeout=30)
        code, output = finish(run, 300)
    measured = figures()
    rollout_id = store.rollouts()[0].id
    report("guest suspended mid-update", measured.load.summary())
    assert code == 1, output  # the update failed: reverted, the rollout halts
    host = store.host(rollout_id, first.name)
    assert host.state is H.ROLLED_BACK, (host.state, host.progress.error)
    revert = [s for s in store.steps(rollout_id) if s.host == first.name and s.step == "revert"]
    assert revert and revert[0].outcome == "ok"
    state = subprocess.run([*virsh, "domstate", first.domain], capture_output=True, text=True, timeout=30)
    assert state.stdout.strip() == "running"
    assert measured.load.failed == 0, measured.load.failures()[:5]
    no_step_left_running(store, rollout_id)
    assert all_in_service(lab)


def test_a_guest_whose_network_is_cut_mid_check_passes_once_it_is_back(
    lab: labmod.LabInfo, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    store = Store(env["ORCH_DATABASE_URL"])
    first = lab.hosts[0]
    tap = network.tap_name(1)
    args = ["run", str(playbook(tmp_path, "lab-v2.yaml")), "-i", str(inventory(lab, tmp_path))]
    with under_load(lab.frontend_url, socket_of(lab)) as figures:
        run = orchestrator(args, env, tmp_path / "run.log")
        wait_for(
            lambda: state_of(store, first.name) is H.CHECKING or None, 120, f"{first.name} checking", 0.01
        )
        subprocess.run(["ip", "-n", network.NETNS, "link", "set", tap, "down"], check=True, timeout=30)
        time.sleep(5)  # the fault is five seconds without a network: that is the behaviour under test
        subprocess.run(["ip", "-n", network.NETNS, "link", "set", tap, "up"], check=True, timeout=30)
        code, output = finish(run, 300)
    measured = figures()
    rollout_id = store.rollouts()[0].id
    report("guest network cut mid-check", measured.load.summary())
    assert code == 0, output
    assert store.host(rollout_id, first.name).state is H.SUCCEEDED
    assert measured.load.failed == 0, measured.load.failures()[:5]
    no_step_left_running(store, rollout_id)
    assert all_in_service(lab)
