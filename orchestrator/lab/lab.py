"""The lab: N real QEMU guests behind a real HAProxy, described by an inventory the orchestrator reads.

Lab dir (``ORCH_LAB_DIR``, default /var/lib/orchestrator-lab)::

    image/          downloaded .debs and the cached kernel + base initramfs (kept by ``down``)
    build/          the compiled appserver (kept)
    keys/           id_ed25519 (+.pub) the client key (kept), known_hosts (rebuilt by ``up``)
    vms/vmN/        host_key, initrd.img, app.qcow2, console.log
    libvirt/        the lab's libvirtd: libvirtd.conf, etc/libvirt/qemu.conf, run/libvirt-sock, logs
    haproxy/        haproxy.cfg, haproxy.sock, haproxy.pid, haproxy.log
    inventory.yaml  pool ``lab``: hosts vm1..vmN
    lab.json        what ``up`` made, for ``status`` and ``down``

The VMs' network (bridge, taps, addresses) and libvirtd with its QEMUs live in the network namespace
``orchlab`` that ``up`` creates (see ``network``); HAProxy and the orchestrator stay in the root
namespace on 127.0.0.1 and reach the VMs through the lab's veth.

All three entry points are idempotent. This module owns the processes it starts, so it may wait
(always bounded) where the orchestrator's adapters may not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrator.adapters.loadbalancers.base import AdminState
from orchestrator.errors import ConfigError
from orchestrator.lab import network
from orchestrator.lab import vms as vmlib
from orchestrator.lab.haproxy import HAProxyProcess, Server, stop_pidfile
from orchestrator.lab.image import (
    GUEST_APP_PORT,
    build_image,
    lab_dir,
    make_app_disk,
    make_host_key,
    make_initrd,
)

log = logging.getLogger(__name__)

FRONTEND = ("127.0.0.1", 18080)
PROMETHEUS = ("127.0.0.1", 18404)  # HAProxy's own exporter, for the prometheus check
BACKEND = "app"
POOL = "lab"
MAX_VMS = 8
BOOT_TIMEOUT = 180.0  # every guest answering SSH and HTTP; four boot in ~12 s, CI machines are slower
LB_TIMEOUT = 30.0
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "libvirtd": "libvirt-daemon libvirt-daemon-driver-qemu",
    "haproxy": "haproxy",
    "mkfs.ext4": "e2fsprogs",
    "cpio": "cpio",
    "ip": "iproute2",
    "gcc": "gcc libc6-dev",
    "ssh-keygen": "openssh-client",
    "unshare": "util-linux",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str
    domain: str
    state: str


@dataclass(frozen=True)
class LabInfo:
    lab_dir: Path
    inventory: Path
    frontend_url: str
    uri: str
    hosts: tuple[HostInfo, ...]
    network: network.Layout
    libvirtd_netns: str | None  # the namespace libvirtd runs in (so its QEMUs); None when it does not run
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of ``up``

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lab_dir"] = str(self.lab_dir)
        data["inventory"] = str(self.inventory)
        data["hosts"] = [asdict(h) for h in self.hosts]
        data["network"] = asdict(self.network)
        return data


def preflight() -> None:
    """Say exactly what is missing for a lab, and how to get it."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "the lab needs root (a network namespace, veth, bridge, taps, libvirtd): run it as root, "
            "e.g. with sudo"
        )
    if not Path("/dev/net/tun").exists():
        problems.append("/dev/net/tun is missing: modprobe tun (or give the container --device /dev/net/tun)")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        problems.append(f"missing tools: apt-get install {' '.join(missing)}")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        problems.append(
            "the libvirt Python module is missing: pip install libvirt-python (needs libvirt-dev)"
        )
    if problems:
        raise ConfigError("cannot start the lab:\n  - " + "\n  - ".join(problems))


def _paths(root: Path) -> dict[str, Path]:
    return {
        "state": root / "lab.json",
        "inventory": root / "inventory.yaml",
        "key": root / "keys" / "id_ed25519",
        "known_hosts": root / "keys" / "known_hosts",
        "haproxy": root / "haproxy",
        "vm_dirs": root / "vms",
    }


def _libvirtd(root: Path) -> vmlib.Libvirtd:
    return vmlib.Libvirtd(root / "libvirt", tuple(network.exec_prefix()))


def _specs(root: Path, count: int, kernel: Path) -> list[vmlib.VMSpec]:
    out = []
    for i in range(1, count + 1):
        vm_dir = root / "vms" / f"vm{i}"
        out.append(
            vmlib.VMSpec(
                domain=f"lab-vm{i}",
                name=f"vm{i}",
                address=network.vm_address(i),
                gateway=network.GATEWAY,
                tap=network.tap_name(i),
                mac=network.mac_address(i),
                kernel=kernel,
                initrd=vm_dir / "initrd.img",
                disk=vm_dir / "app.qcow2",
                console=vm_dir / "console.log",
            )
        )
    return out


def up(vms: int = 4) -> LabInfo:
    """Start the lab (or make sure the running one is whole) and return where everything is."""
    if not 1 <= vms <= MAX_VMS:
        raise ConfigError(f"the lab runs 1 to {MAX_VMS} VMs, not {vms}")
    preflight()
    root = lab_dir()
    paths = _paths(root)
    current = status()
    if current is not None and len(current.hosts) != vms:
        log.info("the lab runs %d VMs, %d asked: rebuilding it", len(current.hosts), vms)
        down()
    elif _outside_namespace(root):
        log.info("a lab from before runs in the root network namespace: rebuilding it in %s", network.NETNS)
        down()
    try:
        return _up(root, paths, vms)
    except BaseException:
        log.warning("the lab did not come up; tearing down what was started")
        try:
            down()
        except ConfigError as exc:
            log.error("tearing the half-started lab down also failed: %s", exc)
        raise


def _outside_namespace(root: Path) -> bool:
    """A lab started before it had a namespace: its bridge and taps, or its libvirtd, in the root one."""
    pid = _libvirtd(root).pid()
    stray = set(network.root_links()) - {network.VETH_HOST}
    return bool(stray) or (pid is not None and network.namespace_of(pid) != network.NETNS)


def _up(root: Path, paths: dict[str, Path], count: int) -> LabInfo:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    image = build_image(root)
    key = paths["key"]
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orchestrator-lab", "-f", str(key)],
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    specs = _specs(root, count, image.kernel)
    known = []
    for spec in specs:
        vm_dir = spec.disk.parent
        vm_dir.mkdir(parents=True, exist_ok=True)
        public = make_host_key(image, vm_dir / "host_key")
        known.append(f"{spec.address} {public}\n")
        make_initrd(
            image, vm_dir, host_key=vm_dir / "host_key", authorized_keys=key.with_suffix(".pub").read_text()
        )
        if not spec.disk.exists():
            make_app_disk(vm_dir)
    paths["known_hosts"].write_text("".join(known))
    timings["image"] = time.monotonic() - t0

    network.check_free()
    network.setup(count)
    daemon = _libvirtd(root)
    daemon.start()
    t1 = time.monotonic()
    with daemon.connect() as conn:
        for spec in specs:
            vmlib.start_domain(conn, spec)
    _write_state(root, paths, specs, daemon.uri)
    _wait_guests(specs)
    timings["boot"] = time.monotonic() - t1

    t2 = time.monotonic()
    proxy = HAProxyProcess(
        paths["haproxy"],
        frontend=FRONTEND,
        backend=BACKEND,
        servers=[Server(s.name, s.address, GUEST_APP_PORT) for s in specs],
        prometheus=PROMETHEUS,
    )
    if not proxy.is_running():
        proxy.start()
    else:
        _back_in_service(proxy, [s.name for s in specs])
    _wait_lb_up(proxy, [s.name for s in specs])
    timings["haproxy"] = time.monotonic() - t2
    _write_inventory(paths, specs, proxy, daemon.uri)
    info = status()
    if info is None:
        raise ConfigError(f"the lab started but its state file {paths['state']} is gone")
    return replace(info, timings=timings)


def _write_state(root: Path, paths: dict[str, Path], specs: list[vmlib.VMSpec], uri: str) -> None:
    state = {
        "uri": uri,
        "frontend": list(FRONTEND),
        "hosts": [{"name": s.name, "address": s.address, "domain": s.domain} for s in specs],
    }
    paths["state"].write_text(json.dumps(state, indent=2) + "\n")


def _write_inventory(
    paths: dict[str, Path], specs: list[vmlib.VMSpec], proxy: HAProxyProcess, uri: str
) -> None:
    inventory = {
        "pools": {
            POOL: {
                "loadbalancer": {
                    "type": "haproxy",
                    "socket": str(proxy.socket_path),
                    "backend": BACKEND,
                    "config": str(proxy.config_path),
                },
                "hypervisor": {"type": "libvirt", "uri": uri},
                "ssh": {
                    "user": "root",
                    "port": 22,
                    "key": str(paths["key"]),
                    "known_hosts": str(paths["known_hosts"]),
                },
                "vars": {"app_dir": "/app", "app_port": GUEST_APP_PORT},
                "hosts": {
                    s.name: {"address": s.address, "domain": s.domain, "lb_server": s.name} for s in specs
                },
            }
        }
    }
    text = "# Written by 'orchestrator lab up'; rewritten on every start.\n"
    paths["inventory"].write_text(text + yaml.safe_dump(inventory, sort_keys=False))


def _port_open(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _healthy(address: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=2.0) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _wait_guests(specs: list[vmlib.VMSpec]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    waiting = list(specs)
    while waiting:
        waiting = [
            s for s in waiting if not (_port_open(s.address, 22) and _healthy(s.address, GUEST_APP_PORT))
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            details = "\n".join(
                f"{s.domain} ({s.address}): last console lines of {s.console}:\n{_tail(s.console)}"
                for s in waiting
            )
            raise ConfigError(
                f"{len(waiting)} lab VM(s) did not answer SSH (22) and HTTP ({GUEST_APP_PORT}/health) "
                f"within {BOOT_TIMEOUT:.0f} s:\n{details}"
            )
        time.sleep(0.2)


def _lb_status(proxy: HAProxyProcess) -> dict[str, str]:
    from orchestrator.adapters.loadbalancers.haproxy_parse import parse_stat

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(proxy.socket_path))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return {}
    return {row.name: row.status for row in parse_stat(data.decode()) if row.proxy == BACKEND}


def _back_in_service(proxy: HAProxyProcess, servers: list[str]) -> None:
    """A lab brought up again starts whole: a server an interrupted run left in maint or drain is put
    back (the HAProxy keeps admin states across reloads, so nothing else would)."""
    from orchestrator.adapters.loadbalancers.haproxy import HAProxy

    lb = HAProxy(socket=proxy.socket_path, backend=BACKEND)
    for state in lb.servers():
        if state.server in servers and state.admin is not AdminState.READY:
            log.warning(
                "lab: %s was in %s, left by an earlier run: back in service", state.server, state.admin.value
            )
            lb.ready(state.server)


def _wait_lb_up(proxy: HAProxyProcess, servers: list[str]) -> None:
    deadline = time.monotonic() + LB_TIMEOUT
    while True:
        states = _lb_status(proxy)
        if all(states.get(s) == "UP" for s in servers):
            return
        if time.monotonic() > deadline:
            raise ConfigError(
                f"HAProxy ({proxy.socket_path}) did not report every lab server UP within "
                f"{LB_TIMEOUT:.0f} s: {states}; see {proxy.log_path}"
            )
        time.sleep(0.2)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def status() -> LabInfo | None:
    """The running lab, with each domain's state, or None when there is none."""
    root = lab_dir()
    paths = _paths(root)
    try:
        state = json.loads(paths["state"].read_text())
    except (OSError, ValueError):
        return None
    daemon = _libvirtd(root)
    states: dict[str, str] = {}
    pid = daemon.pid()
    if daemon.answers():
        with daemon.connect() as conn:
            states = {h["domain"]: vmlib.domain_state(conn, h["domain"]) for h in state["hosts"]}
    hosts = tuple(
        HostInfo(
            h["name"], h["address"], h["domain"], states.get(h["domain"], "unknown (libvirtd is not running)")
        )
        for h in state["hosts"]
    )
    host, port = state["frontend"]
    return LabInfo(
        lab_dir=root,
        inventory=paths["inventory"],
        frontend_url=f"http://{host}:{port}/",
        uri=state["uri"],
        hosts=hosts,
        network=network.layout(),
        libvirtd_netns=None if pid is None else network.namespace_of(pid),
    )


def down() -> None:
    """Stop and remove everything ``up`` started: HAProxy, VMs, libvirtd, then the network namespace
    with its veth, bridge, taps and route. Caches stay."""
    root = lab_dir()
    paths = _paths(root)
    stop_pidfile(paths["haproxy"] / "haproxy.pid")
    daemon = _libvirtd(root)
    if daemon.answers():
        with daemon.connect() as conn:
            vmlib.remove_domains(conn)
    daemon.stop()
    vmlib.kill_strays(root)
    network.teardown()
    for path in (paths["state"], paths["inventory"], paths["known_hosts"]):
        path.unlink(missing_ok=True)
    for sub in (paths["vm_dirs"], root / "libvirt", paths["haproxy"]):
        shutil.rmtree(sub, ignore_errors=True)
    left = vmlib.stray_qemus(root) + vmlib.our_libvirtds(root)
    if left:
        raise ConfigError(
            f"lab processes survived 'down': pids {left}; kill them by pid and rerun 'lab down'"
        )
