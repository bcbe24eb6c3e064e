"""A farm of hosts on loopback addresses: each host its own sshd and app, all behind a real HAProxy.

No VMs: snapshots are made by commands over SSH (a tar of the app's releases), through the same
`command` snapshot provider an operator would use for physical servers. Used by the end-to-end tests
on loopback and by `orchestrator demo --loopback`.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.lab.app import appctl, build_app, install_app_dir, make_artifact
from orchestrator.lab.haproxy import HAProxyProcess, Server
from orchestrator.lab.sshd import SshdProcess, free_port, generate_keypair

SNAPSHOT_COMMANDS = {
    "type": "command",
    "create": (
        "tar -C {{ vars.app_dir }} -czf {{ vars.app_dir }}/../snapshot-{{ snapshot }}.tgz releases current"
    ),
    "revert": (
        "{{ vars.app_dir }}/bin/appctl stop && rm -rf {{ vars.app_dir }}/releases {{ vars.app_dir }}/current"
        " && tar -C {{ vars.app_dir }} -xzf {{ vars.app_dir }}/../snapshot-{{ snapshot }}.tgz"
        " && {{ vars.app_dir }}/bin/appctl start"
    ),
    "delete": "rm -f {{ vars.app_dir }}/../snapshot-{{ snapshot }}.tgz",
}


@dataclass(frozen=True)
class FarmHost:
    name: str
    address: str
    app_port: int
    app_dir: Path


def free_subnet(app_port: int = 8080) -> str:
    """A 127.x.y subnet whose first host address is free, so farms of parallel runs never collide."""
    start = os.getpid() % 200
    for n in range(200):
        subnet = f"127.77.{(start + n) % 200 + 1}"
        with socket.socket() as probe:
            try:
                probe.bind((f"{subnet}.11", app_port))
            except OSError:
                continue
        return subnet
    raise RuntimeError("no free 127.77.x subnet for a loopback farm: are 200 farms running?")


class LoopbackFarm:
    def __init__(
        self, workdir: Path, *, hosts: int = 3, delay_ms: int = 150, subnet: str | None = None
    ) -> None:
        self.workdir = workdir
        self.delay_ms = delay_ms
        subnet = subnet or free_subnet()
        self.hosts = [
            FarmHost(f"host{i}", f"{subnet}.{10 + i}", 8080, workdir / f"host{i}" / "app")
            for i in range(1, hosts + 1)
        ]
        self.ssh_port = free_port(self.hosts[0].address)
        self.frontend_port = free_port("127.0.0.1")
        self.haproxy = HAProxyProcess(
            workdir / "haproxy",
            frontend=("127.0.0.1", self.frontend_port),
            backend="app",
            servers=[Server(h.name, h.address, h.app_port) for h in self.hosts],
            check_path="/health",
            check_inter_ms=200,
            rise=2,
            fall=2,
        )
        self._sshds: list[SshdProcess] = []
        self.key = workdir / "keys" / "id_ed25519"
        self.known_hosts = workdir / "keys" / "known_hosts"
        self.inventory = workdir / "inventory.yaml"
        self.files = workdir / "files"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.frontend_port}/"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.key.parent.mkdir(parents=True, exist_ok=True)
        public = (
            generate_keypair(self.key) if not self.key.exists() else self.key.with_suffix(".pub").read_text()
        )
        binary = build_app(self.workdir / "build")
        lines = []
        for host in self.hosts:
            install_app_dir(
                host.app_dir,
                "1",
                port=host.app_port,
                address=host.address,
                delay_ms=self.delay_ms,
                binary=binary,
            )
            done = appctl(host.app_dir, "start")
            if done.returncode != 0:
                raise RuntimeError(f"app on {host.name} did not start: {done.stderr.strip()}")
            sshd = SshdProcess(
                self.workdir / host.name / "sshd",
                address=host.address,
                port=self.ssh_port,
                authorized_keys=[public.strip()],
            )
            sshd.start()
            self._sshds.append(sshd)
            lines.append(sshd.known_hosts_line)
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self.haproxy.start()
        for version, broken in (("2", False), ("2", True), ("3", True)):
            make_artifact(version, self.files, broken=broken, delay_ms=self.delay_ms)
        self.inventory.write_text(yaml.safe_dump(self.inventory_data(), sort_keys=False))

    def inventory_data(self) -> dict[str, object]:
        return {
            "pools": {
                "loopback": {
                    "loadbalancer": {
                        "type": "haproxy",
                        "socket": str(self.haproxy.socket_path),
                        "backend": "app",
                        "config": str(self.haproxy.config_path),
                    },
                    "hypervisor": SNAPSHOT_COMMANDS,
                    "ssh": {
                        "user": "root",
                        "port": self.ssh_port,
                        "key": str(self.key),
                        "known_hosts": str(self.known_hosts),
                    },
                    "vars": {"app_port": 8080, "files": str(self.files)},
                    "hosts": {
                        h.name: {"address": h.address, "vars": {"app_dir": str(h.app_dir)}}
                        for h in self.hosts
                    },
                }
            }
        }

    def versions(self) -> dict[str, str]:
        """What each host's app reports (through appctl status, not through the LB)."""
        result = {}
        for host in self.hosts:
            done = appctl(host.app_dir, "status")
            result[host.name] = (
                done.stdout.strip() if done.returncode == 0 else f"down: {done.stderr.strip()}"
            )
        return result

    def reset(self, version: str = "1", timeout: float = 30.0) -> None:
        """Every host back on ``version`` and in service, as before a rollout."""
        for host in self.hosts:
            current = host.app_dir / "current"
            current.unlink()
            current.symlink_to(f"releases/{version}")
            done = appctl(host.app_dir, "restart")
            if done.returncode != 0:
                raise RuntimeError(f"app on {host.name} did not restart: {done.stderr.strip()}")
        lb = HAProxy(socket=self.haproxy.socket_path, backend="app")
        deadline = time.monotonic() + timeout
        while not all(s.up_after_check for s in lb.servers()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every server came back UP within {timeout:g}s: {lb.servers()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.haproxy.stop()
        for sshd in self._sshds:
            sshd.stop()
        self._sshds.clear()
        for host in self.hosts:
            if (host.app_dir / "bin" / "appctl").exists():
                appctl(host.app_dir, "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
