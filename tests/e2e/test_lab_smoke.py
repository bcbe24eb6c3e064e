"""The VM lab end to end: real QEMU guests under the lab's libvirtd, behind HAProxy, reached over SSH.

Prints the measured boot, snapshot and revert times (run with -s to see them). Needs root.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from orchestrator.adapters.loadbalancers.haproxy_parse import parse_stat
from orchestrator.errors import ConfigError
from orchestrator.lab import lab, network, vms
from orchestrator.model.inventory import load_inventory

pytestmark = [pytest.mark.vm, pytest.mark.e2e]


@pytest.fixture(scope="module")
def info() -> Iterator[lab.LabInfo]:
    started = time.monotonic()
    try:
        result = lab.up(2)
        print(f"\nlab up with 2 VMs: {time.monotonic() - started:.1f} s, phases {result.timings}")
        yield result
    finally:
        lab.down()


def ssh(address: str, info: lab.LabInfo, known_hosts: Path | None = None) -> paramiko.SSHClient:
    inventory, _ = load_inventory(info.inventory)
    pool = inventory.pools["lab"]
    assert pool.ssh.key is not None and pool.ssh.known_hosts is not None
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or pool.ssh.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address,
        port=22,
        username="root",
        key_filename=str(pool.ssh.key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
    return out


def until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
        except (OSError, paramiko.SSHException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def backend_stats(info: lab.LabInfo) -> dict[str, dict[str, str]]:
    inventory, _ = load_inventory(info.inventory)
    path = inventory.pools["lab"].loadbalancer.socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return {row.name: dict(row.fields) for row in parse_stat(data.decode()) if row.proxy == "app"}


def test_inventory_describes_the_lab(info: lab.LabInfo) -> None:
    inventory, _ = load_inventory(info.inventory)
    pool = inventory.pools["lab"]
    assert sorted(pool.hosts) == ["vm1", "vm2"]
    assert pool.vars == {"app_dir": "/app", "app_port": 8080}
    assert [h.state for h in info.hosts] == ["running", "running"]
    assert lab.status() is not None
    assert lab.up(2).hosts == info.hosts  # idempotent: a second up changes nothing


def test_every_vm_answers_through_haproxy(info: lab.LabInfo) -> None:
    before = {name: int(row["stot"]) for name, row in backend_stats(info).items() if name.startswith("vm")}
    for _ in range(10):
        with urllib.request.urlopen(info.frontend_url, timeout=5) as resp:
            assert resp.status == 200
            assert resp.read() == b"version=1\n"
    after = {name: int(row["stot"]) for name, row in backend_stats(info).items() if name.startswith("vm")}
    assert sorted(after) == ["vm1", "vm2"]
    assert all(after[n] > before[n] for n in after), (before, after)


def test_ssh_with_strict_host_keys(info: lab.LabInfo, tmp_path: Path) -> None:
    for host in info.hosts:
        client = ssh(host.address, info)
        try:
            assert run(client, "cat /app/current/VERSION") == "1\n"
            assert "running" in run(client, "/app/bin/appctl status")
            sftp = client.open_sftp()
            sftp.close()
        finally:
            client.close()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException):
        ssh(info.hosts[0].address, info, known_hosts=empty)  # an unknown host key is refused


def test_snapshot_and_revert_restore_a_changed_file(info: lab.LabInfo) -> None:
    import libvirt

    host = info.hosts[0]
    client = ssh(host.address, info)
    try:
        run(client, "echo before > /app/marker")
    finally:
        client.close()
    conn = libvirt.open(info.uri)
    try:
        dom = conn.lookupByName(host.domain)
        started = time.monotonic()
        snap = dom.snapshotCreateXML("<domainsnapshot><name>smoke</name></domainsnapshot>", 0)
        snapshot_s = time.monotonic() - started

        client = ssh(host.address, info)
        try:
            run(client, "echo after > /app/marker")
            assert run(client, "cat /app/marker") == "after\n"
        finally:
            client.close()

        started = time.monotonic()
        dom.revertToSnapshot(snap, 0)
        revert_s = time.monotonic() - started
        # open sessions do not survive a revert: reconnect
        marker = until("SSH after the revert", lambda: _read_marker(host.address, info))
        back_s = time.monotonic() - started
        assert marker == "before\n"
        assert vms.domain_state(conn, host.domain) == "running"
        snap.delete(0)
    finally:
        conn.close()
    print(
        f"\nsnapshot (memory + disk) {snapshot_s:.2f} s, revert {revert_s:.2f} s, "
        f"SSH again after {back_s:.2f} s"
    )


def _read_marker(address: str, info: lab.LabInfo) -> str:
    client = ssh(address, info)
    try:
        return run(client, "cat /app/marker")
    finally:
        client.close()


def test_down_leaves_nothing(info: lab.LabInfo) -> None:
    haproxy_pid = (info.lab_dir / "haproxy" / "haproxy.pid").read_text().split()[0]
    lab.down()
    lab.down()  # idempotent
    assert lab.status() is None
    assert network.our_links() == []
    assert vms.stray_qemus(info.lab_dir) == []
    assert vms.our_libvirtds(info.lab_dir) == []
    assert not _process_alive(int(haproxy_pid))
    assert not info.inventory.exists()


def _process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")


def test_a_lab_that_cannot_start_says_why_and_leaves_nothing(
    info: lab.LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.down()
    monkeypatch.setattr(lab, "BOOT_TIMEOUT", 0.5)  # no guest boots that fast: up must give up
    with pytest.raises(ConfigError) as err:
        lab.up(1)
    message = str(err.value)
    assert "lab-vm1" in message and "console" in message and "did not answer SSH" in message
    assert lab.status() is None
    assert network.our_links() == []
    assert vms.stray_qemus(info.lab_dir) == []
    assert vms.our_libvirtds(info.lab_dir) == []
