"""The lab's private network, inside a network namespace of its own that ``setup`` creates::

    root namespace                          namespace orchlab (ip_forward=1 here only)
    orchlab-host 198.18.77.1/30  ==veth==   orchlab-lab 198.18.77.2/30
    10.213.77.0/24 via 198.18.77.2          orchlab0 (bridge) 10.213.77.1/24, the guests' gateway
                                              orchlab-vmN (tap) -- VM N at 10.213.77.(10+N)

The host's end of the veth is the lab's only interface in the root namespace, and the route through it
the lab's only route there: no VM address, bridge or tap ever sits in the root namespace. libvirtd (so
every QEMU) runs inside the namespace (``exec_prefix``), where it opens the taps by name. The namespace
has no default route, so the guests reach nothing beyond it but the host's end of the veth. No uplink,
no NAT, no change to the root namespace's ip_forward. Every link is named with ``PREFIX``, so
``teardown`` finds them all even without the lab's state file.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

PREFIX = "orchlab"
NETNS = "orchlab"
BRIDGE = "orchlab0"
VETH_HOST = "orchlab-host"  # the root namespace's end
VETH_LAB = "orchlab-lab"  # the namespace's end
SUBNET = "10.213.77"  # the VMs' /24, nothing else on a lab machine uses it; see ``check_free``
GATEWAY = f"{SUBNET}.1"  # the bridge's address, inside the namespace
# The veth's /30 comes from 198.18.0.0/15 (RFC 2544, for benchmarking test networks): not a private range,
# so the one address the lab adds to the root namespace is not one test traffic is forbidden to meet.
# It needs an address of its own: without one the kernel would take eth0's as the source.
TRANSIT = "198.18.77"
HOST_ADDRESS = f"{TRANSIT}.1"
LAB_ADDRESS = f"{TRANSIT}.2"
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Layout:
    """What ``setup`` builds, and whether it is there now (for ``lab status``)."""

    namespace: str
    present: bool
    bridge: str
    gateway: str
    veth_host: str
    host_address: str
    veth_lab: str
    lab_address: str
    route: str


def layout() -> Layout:
    return Layout(
        namespace=NETNS,
        present=namespace_exists(),
        bridge=BRIDGE,
        gateway=f"{GATEWAY}/24",
        veth_host=VETH_HOST,
        host_address=f"{HOST_ADDRESS}/30",
        veth_lab=VETH_LAB,
        lab_address=f"{LAB_ADDRESS}/30",
        route=f"{SUBNET}.0/24 via {LAB_ADDRESS} dev {VETH_HOST}",
    )


def vm_address(index: int) -> str:
    return f"{SUBNET}.{10 + index}"


def tap_name(index: int) -> str:
    return f"{PREFIX}-vm{index}"  # at most 15 characters (IFNAMSIZ)


def mac_address(index: int) -> str:
    return f"52:54:00:4c:ab:{index:02x}"


def exec_prefix() -> list[str]:
    """Prepend to a command to run it inside the lab's namespace (its sockets, links and routes)."""
    return ["ip", "netns", "exec", NETNS]


def _ip(*args: str, netns: bool = False, check: bool = True) -> str:
    cmd = ["ip", "-n", NETNS, *args] if netns else ["ip", *args]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise ConfigError("the 'ip' command is missing; apt-get install iproute2") from exc
    if check and done.returncode != 0:
        raise ConfigError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def namespace_exists() -> bool:
    # prints nothing at all before the first namespace of the machine exists
    return any(ns.get("name") == NETNS for ns in json.loads(_ip("-json", "netns", "list") or "[]"))


def _names(output: str) -> list[str]:
    links = json.loads(output or "[]")
    return [str(link["ifname"]) for link in links if str(link.get("ifname", "")).startswith(PREFIX)]


def root_links() -> list[str]:
    """Our links in the root namespace: the veth's end when the lab is up, nothing when it is down."""
    return _names(_ip("-json", "link", "show"))


def lab_links() -> list[str]:
    """Our links inside the namespace (bridge, taps, the veth's end); empty when there is no namespace."""
    return _names(_ip("-json", "link", "show", netns=True)) if namespace_exists() else []


def namespace_of(pid: int) -> str | None:
    """The ``ip netns`` name of the process's network namespace, ``root`` for ours (the orchestrator
    runs in the root namespace; /proc/1 may not be readable in a container), None if unknown."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        named = list(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
        for entry in named:
            if entry.stat().st_ino == inode:
                return entry.name
        return "root" if inode == os.stat("/proc/self/ns/net").st_ino else None
    except OSError:
        return None


def check_free() -> None:
    """Refuse to start if another interface already routes our subnets (it would swallow the traffic)."""
    for route in json.loads(_ip("-json", "route", "show") or "[]"):
        dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
        for name, subnet in (("SUBNET", SUBNET), ("TRANSIT", TRANSIT)):
            if dst.startswith(f"{subnet}.") and dev != VETH_HOST:
                raise ConfigError(
                    f"the lab's addresses {subnet}.x are already routed via {dev} ({dst}); "
                    f"remove that route or change orchestrator.lab.network.{name}"
                )


def setup(count: int) -> None:
    """The namespace, the veth pair, the bridge and ``count`` taps, addresses and routes; idempotent."""
    if not namespace_exists():
        _ip("netns", "add", NETNS)
    _ip("link", "set", "lo", "up", netns=True)
    # forwarding between the veth and the bridge, in this namespace only (the sysctl is per namespace)
    _in_namespace(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
    if VETH_HOST not in root_links():
        _ip("link", "del", VETH_LAB, netns=True, check=False)  # a half of an earlier pair, if any
        _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_LAB, "netns", NETNS)
    # IPv4 only: an fe80:: address on the host's end would be a second way into the root namespace
    _disable_ipv6(VETH_HOST)
    _address(VETH_HOST, f"{HOST_ADDRESS}/30", netns=False)
    _ip("link", "set", VETH_HOST, "up")
    _address(VETH_LAB, f"{LAB_ADDRESS}/30", netns=True)
    _ip("link", "set", VETH_LAB, "up", netns=True)
    if BRIDGE not in lab_links():
        _ip("link", "add", BRIDGE, "type", "bridge", netns=True)
    _address(BRIDGE, f"{GATEWAY}/24", netns=True)
    _ip("link", "set", BRIDGE, "up", netns=True)
    for i in range(1, count + 1):
        _setup_tap(tap_name(i))
    _ip("route", "replace", f"{SUBNET}.0/24", "via", LAB_ADDRESS, "dev", VETH_HOST)


def _in_namespace(cmd: list[str]) -> None:
    done = subprocess.run(
        [*exec_prefix(), *cmd],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ConfigError(f"{' '.join(cmd)} in namespace {NETNS} failed: {done.stderr.strip()}")


def _disable_ipv6(dev: str) -> None:
    knob = Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6")
    if knob.exists():  # absent when the kernel runs without IPv6
        knob.write_text("1\n")


def _address(dev: str, cidr: str, *, netns: bool) -> None:
    if f" {cidr} " not in _ip("-4", "-o", "addr", "show", "dev", dev, netns=netns):
        _ip("addr", "add", cidr, "dev", dev, netns=netns)


def _setup_tap(name: str) -> None:
    """A persistent tap on the bridge; the namespace's libvirtd opens it by name (managed='no')."""
    if name not in lab_links():
        _ip("tuntap", "add", "dev", name, "mode", "tap", netns=True)
    _ip("link", "set", name, "master", BRIDGE, netns=True)
    _ip("link", "set", name, "up", netns=True)


def namespace_pids() -> list[int]:
    if not namespace_exists():
        return []
    return [int(p) for p in _ip("netns", "pids", NETNS, check=False).split()]


def teardown() -> None:
    """Delete the veth, every tap, the bridge and the namespace, and any link an older lab left in the
    root namespace; missing pieces are fine. Processes inside the namespace must be stopped first."""
    for name in root_links():  # the veth's end takes its peer along, and the route with it
        _ip("link", "del", name, check=False)
    if namespace_exists():
        for name in sorted(lab_links(), key=lambda n: n == BRIDGE):
            _ip("link", "del", name, netns=True, check=False)
        left = namespace_pids()
        if left:
            raise ConfigError(
                f"processes {left} still run in the lab's network namespace {NETNS} "
                f"(ip netns pids {NETNS}); stop them by pid and rerun 'orchestrator lab down'"
            )
        _ip("netns", "del", NETNS)
    left_links = root_links()
    if left_links or namespace_exists():
        raise ConfigError(
            f"could not remove the lab's network: links {left_links} in the root namespace, namespace "
            f"{NETNS} {'still there' if namespace_exists() else 'gone'}; try 'ip link del NAME', "
            f"'ip netns del {NETNS}'"
        )
