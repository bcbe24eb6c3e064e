"""The lab's private network: one bridge, one tap per VM, nothing else.

The bridge gets ``SUBNET.1/24``; VM ``i`` (1-based) gets ``SUBNET.(10+i)``. No uplink, no NAT, no
ip_forward change: traffic between the host and the guests never leaves this machine. Every link we
create starts with ``PREFIX``, so ``teardown`` finds them all even without the lab's state file.
"""

from __future__ import annotations

import json
import subprocess

from orchestrator.errors import ConfigError

PREFIX = "orchlab"
BRIDGE = "orchlab0"
SUBNET = "10.213.77"  # a /24 nothing else on a lab machine uses; see ``check_free``
HOST_ADDRESS = f"{SUBNET}.1"


def vm_address(index: int) -> str:
    return f"{SUBNET}.{10 + index}"


def tap_name(index: int) -> str:
    return f"{PREFIX}-vm{index}"  # at most 15 characters (IFNAMSIZ)


def mac_address(index: int) -> str:
    return f"52:54:00:4c:ab:{index:02x}"


def _ip(*args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise ConfigError("the 'ip' command is missing; apt-get install iproute2") from exc
    if check and done.returncode != 0:
        raise ConfigError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def our_links() -> list[str]:
    """Names of every link we may have created (bridge and taps), taps first."""
    links = json.loads(_ip("-json", "link", "show") or "[]")
    names = [str(link["ifname"]) for link in links if str(link.get("ifname", "")).startswith(PREFIX)]
    return sorted(names, key=lambda n: n == BRIDGE)


def check_free() -> None:
    """Refuse to start if another interface already routes our subnet (it would swallow the traffic)."""
    routes = json.loads(_ip("-json", "route", "show") or "[]")
    for route in routes:
        dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
        if dst.startswith(f"{SUBNET}.") and not dev.startswith(PREFIX):
            raise ConfigError(
                f"the lab subnet {SUBNET}.0/24 is already routed via {dev} ({dst}); "
                "remove that route or change orchestrator.lab.network.SUBNET"
            )


def setup_bridge() -> None:
    if BRIDGE not in our_links():
        _ip("link", "add", BRIDGE, "type", "bridge")
    addrs = _ip("-4", "-o", "addr", "show", "dev", BRIDGE)
    if f"{HOST_ADDRESS}/24" not in addrs:
        _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def setup_tap(index: int) -> str:
    """A persistent tap on the bridge; libvirt opens it by name (interface type='ethernet', managed='no')."""
    name = tap_name(index)
    if name not in our_links():
        _ip("tuntap", "add", "dev", name, "mode", "tap")
    _ip("link", "set", name, "master", BRIDGE)
    _ip("link", "set", name, "up")
    return name


def teardown() -> None:
    """Delete every tap and the bridge; nothing of ours is left, missing links are fine."""
    for name in our_links():
        _ip("link", "del", name, check=False)
    left = our_links()
    if left:
        raise ConfigError(f"could not delete the lab's network links {left}; try 'ip link del NAME'")
