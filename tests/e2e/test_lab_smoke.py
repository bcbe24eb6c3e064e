"""The VM lab end to end: real QEMU guests under the lab's libvirtd, behind HAProxy, reached over SSH,
their network inside the lab's own network namespace.

Prints the measured boot, snapshot and revert times (run with -s to see them). Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from click.testing import CliRunner

from orchestrator.adapters.loadbalancers.haproxy_parse import parse_stat
from orchestrator.errors import ConfigError
from orchestrator.lab import lab, network, vms
from orchestrator.lab.cli import lab as lab_cli
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


def ip_json(*args: str, netns: str | None = None) -> Any:
    cmd = ["ip", *(["-n", netns] if netns else []), "-json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout or "[]")  # `ip netns list` prints nothing before any namespace exists


def ours(links: list[dict[str, Any]]) -> list[str]:
    return [str(link["ifname"]) for link in links if str(link["ifname"]).startswith(network.PREFIX)]


def test_the_lab_network_lives_in_its_own_namespace(info: lab.LabInfo) -> None:
    # The root namespace holds one link of ours, the veth's end, with one address, not a VM's.
    links = ip_json("-details", "link", "show")
    assert ours(links) == [network.VETH_HOST]
    (veth,) = [link for link in links if link["ifname"] == network.VETH_HOST]
    assert veth["linkinfo"]["info_kind"] == "veth"
    root_addresses = {
        a["local"]: link["ifname"] for link in ip_json("addr", "show") for a in link["addr_info"]
    }
    assert [a for a in root_addresses if a.startswith(f"{network.SUBNET}.")] == []
    assert [a for a, dev in root_addresses.items() if dev == network.VETH_HOST] == [network.HOST_ADDRESS]
    for host in info.hosts:
        (route,) = ip_json("route", "get", host.address)
        assert (route["dev"], route["gateway"], route["prefsrc"]) == (
            network.VETH_HOST,
            network.LAB_ADDRESS,
            network.HOST_ADDRESS,
        ), route

    # Inside the namespace: the bridge with the guests' gateway, one tap per VM on it, the veth's peer.
    inside = {link["ifname"]: link for link in ip_json("-details", "link", "show", netns=network.NETNS)}
    taps = [network.tap_name(i) for i in range(1, len(info.hosts) + 1)]
    assert sorted(ours(list(inside.values()))) == sorted([network.BRIDGE, network.VETH_LAB, *taps])
    assert all(
        inside[t]["master"] == network.BRIDGE and inside[t]["linkinfo"]["info_kind"] == "tun" for t in taps
    )
    bridge = ip_json("addr", "show", "dev", network.BRIDGE, netns=network.NETNS)[0]
    assert f"{network.GATEWAY}/24" in {f"{a['local']}/{a['prefixlen']}" for a in bridge["addr_info"]}
    # libvirtd and every QEMU run there, so each opened its tap there
    assert info.libvirtd_netns == network.NETNS
    qemus = vms.stray_qemus(info.lab_dir)
    assert len(qemus) == len(info.hosts)
    assert {network.namespace_of(pid) for pid in qemus} == {network.NETNS}

    # From the root namespace the VMs answer HTTP and SSH, and SSH sees us coming from the veth's end.
    for host in info.hosts:
        with urllib.request.urlopen(f"http://{host.address}:8080/health", timeout=5) as resp:
            assert resp.status == 200
        client = ssh(host.address, info)
        try:
            assert run(client, "echo $SSH_CONNECTION").split()[:1] == [network.HOST_ADDRESS]
        finally:
            client.close()

    result = CliRunner().invoke(lab_cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["network"]["namespace"], shown["network"]["present"]) == (network.NETNS, True)
    assert shown["libvirtd_netns"] == network.NETNS
    assert f"namespace {network.NETNS}" in CliRunner().invoke(lab_cli, ["status"]).output


PROBE = """
import errno, json, socket, sys
port, out = int(sys.argv[1]), {}
for address in sys.argv[2:]:
    try:
        socket.create_connection((address, port), timeout=3).close()
        out[address] = "connected"
    except OSError as exc:
        out[address] = errno.errorcode.get(exc.errno or 0, "timeout")
print(json.dumps(out))
"""


def probe_in_namespace(port: int, addresses: list[str]) -> dict[str, str]:
    cmd = [*network.exec_prefix(), sys.executable, "-c", PROBE, str(port), *addresses]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, str] = json.loads(done.stdout)
    return result


def probe_from_guest(client: paramiko.SSHClient, port: int, addresses: list[str]) -> dict[str, str]:
    script = "; ".join(
        f"if nc -w 3 {a} {port} </dev/null 2>/dev/null; then echo {a} connected; else echo {a} failed; fi"
        for a in addresses
    )
    return dict(line.split() for line in run(client, script).splitlines())


@contextlib.contextmanager
def listening_everywhere() -> Iterator[tuple[int, bool]]:
    """A TCP listener on every address of the root namespace that closes what it accepts (busybox nc
    exits only when the other side closes); yields its port and whether it takes IPv6 too."""
    dualstack = socket.has_dualstack_ipv6()
    family = socket.AF_INET6 if dualstack else socket.AF_INET
    stop = threading.Event()
    with socket.create_server(("", 0), family=family, dualstack_ipv6=dualstack, backlog=64) as listener:
        listener.settimeout(0.2)

        def serve() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    listener.accept()[0].close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], dualstack
        finally:
            stop.set()
            thread.join(timeout=5)


def test_negative_control_the_namespace_isolates(info: lab.LabInfo) -> None:
    """Of every address this machine has, the namespace and the guests reach only the veth's end (the way
    replies come back), while the root namespace reaches them all; 127.0.0.1 in there is not ours."""
    with listening_everywhere() as (port, dualstack):
        addresses = sorted(
            a["local"]
            for link in ip_json("addr", "show")
            for a in link["addr_info"]
            if a.get("scope") != "link" and (dualstack or a["family"] == "inet")
        )
        assert network.HOST_ADDRESS in addresses and len(addresses) > 2
        # the control of the control: from the root namespace, each of them answers
        for address in addresses:
            socket.create_connection((address, port), timeout=5).close()

        inside = probe_in_namespace(port, addresses)
        assert {a for a, r in inside.items() if r == "connected"} == {network.HOST_ADDRESS}, inside
        client = ssh(info.hosts[0].address, info)
        try:
            from_guest = probe_from_guest(client, port, addresses)
        finally:
            client.close()
        assert {a for a, r in from_guest.items() if r == "connected"} == {network.HOST_ADDRESS}, from_guest

    # HAProxy's frontend answers on the root namespace's loopback, not on the namespace's own
    with urllib.request.urlopen(info.frontend_url, timeout=5) as resp:
        assert resp.status == 200
    assert probe_in_namespace(lab.FRONTEND[1], [lab.FRONTEND[0]]) == {lab.FRONTEND[0]: "ECONNREFUSED"}


def assert_no_lab_network() -> None:
    """No namespace, veth, bridge, tap, address or route of ours, in the root namespace or any other."""
    namespaces = [ns["name"] for ns in ip_json("netns", "list")]
    assert network.NETNS not in namespaces
    assert ours(ip_json("link", "show")) == []
    for ns in namespaces:
        assert ours(ip_json("link", "show", netns=ns)) == [], ns
    addresses = [a["local"] for link in ip_json("addr", "show") for a in link["addr_info"]]
    routes = [str(r.get("dst", "")) for r in ip_json("route", "show")]
    for subnet in (network.SUBNET, network.TRANSIT):
        assert [a for a in addresses + routes if a.startswith(f"{subnet}.")] == [], subnet


def test_down_leaves_nothing(info: lab.LabInfo) -> None:
    haproxy_pid = (info.lab_dir / "haproxy" / "haproxy.pid").read_text().split()[0]
    lab.down()
    lab.down()  # idempotent
    assert lab.status() is None
    assert_no_lab_network()
    assert vms.stray_qemus(info.lab_dir) == []
    assert vms.our_libvirtds(info.lab_dir) == []
    assert not _process_alive(int(haproxy_pid))
    assert not info.inventory.exists()


def test_down_cleans_up_after_a_crash_without_the_state_file(info: lab.LabInfo) -> None:
    lab.up(1)
    for pid in vms.our_libvirtds(info.lab_dir):  # the lab's own libvirtd, which this test started
        os.kill(pid, signal.SIGKILL)
    (info.lab_dir / "lab.json").unlink()
    assert lab.status() is None
    assert vms.stray_qemus(info.lab_dir) != []  # QEMU outlives libvirtd, inside the namespace
    lab.down()
    assert_no_lab_network()
    assert vms.stray_qemus(info.lab_dir) == []
    assert vms.our_libvirtds(info.lab_dir) == []


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
    assert_no_lab_network()
    assert vms.stray_qemus(info.lab_dir) == []
    assert vms.our_libvirtds(info.lab_dir) == []
