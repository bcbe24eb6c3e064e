"""Builds the adapters a rollout's spec names, once per process, and keeps them for reuse.

A worker process serves many ticks of many hosts; reconnecting to HAProxy is free but SSH costs ~60 ms
and libvirt a few, so connections live here for the life of the process.
"""

from __future__ import annotations

import threading

from orchestrator.adapters.checks.base import Check
from orchestrator.adapters.checks.command import RemoteCommandCheck
from orchestrator.adapters.checks.http import HTTPCheck
from orchestrator.adapters.checks.tcp import TCPCheck
from orchestrator.adapters.hypervisors.base import Snapshots
from orchestrator.adapters.hypervisors.command import CommandSnapshots
from orchestrator.adapters.hypervisors.libvirt import LibvirtSnapshots
from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.adapters.remote.base import Remote, SSHTarget
from orchestrator.adapters.remote.ssh import SSHPool
from orchestrator.engine.host.ports import Adapters
from orchestrator.engine.secrets import SecretValues
from orchestrator.model.inventory import CommandSnapshotConfig, HAProxyConfig, LibvirtConfig
from orchestrator.model.libvirt_uri import connection_uri
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec


def haproxy(config: HAProxyConfig, *, timeout: float | None = None) -> HAProxy:
    """The adapter for an inventory's load balancer (``timeout``: a shorter bound than its own)."""
    bound = config.timeout if timeout is None else min(config.timeout, timeout)
    return HAProxy(
        socket=config.socket,
        address=config.address,
        backend=config.backend,
        timeout=bound,
        config=config.config,
    )


def ssh_target(host: HostSpec) -> SSHTarget:
    ssh = host.ssh
    return SSHTarget(
        host=host.name,
        address=ssh.address,
        port=ssh.port,
        user=ssh.user,
        key_file=ssh.key_file,
        known_hosts=ssh.known_hosts,
        connect_timeout=ssh.connect_timeout,
    )


class Remotes:
    """The pipeline's view of the SSH pool: by host spec."""

    def __init__(self, pool: SSHPool) -> None:
        self._pool = pool

    def get(self, host: HostSpec) -> Remote:
        return self._pool.get(ssh_target(host))

    def discard(self, host: HostSpec) -> None:
        self._pool.discard(ssh_target(host))


class Runtime:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lbs: dict[HAProxyConfig, HAProxy] = {}
        self._libvirt: dict[str, LibvirtSnapshots] = {}
        self.ssh = SSHPool()
        self.remotes = Remotes(self.ssh)

    def loadbalancer(self, config: HAProxyConfig) -> HAProxy:
        with self._lock:
            return self._lbs.setdefault(config, haproxy(config))

    def _libvirt_for(self, uri: str, timeout: float) -> LibvirtSnapshots:
        with self._lock:
            found = self._libvirt.get(uri)
            if found is None:
                found = self._libvirt[uri] = LibvirtSnapshots(uri, call_timeout=timeout)
            return found

    def snapshots(self, spec: RolloutSpec, host: HostSpec, secrets: SecretValues) -> Snapshots | None:
        hypervisor = spec.hypervisor
        if isinstance(hypervisor, LibvirtConfig):
            # Never the raw uri: over SSH libvirt must check the inventory's known_hosts, not its defaults.
            uri = connection_uri(hypervisor.uri, known_hosts=hypervisor.known_hosts, key=hypervisor.key)
            return self._libvirt_for(uri, hypervisor.timeout)
        if isinstance(hypervisor, CommandSnapshotConfig):
            commands = {action: secrets.shell(text) for action, text in host.snapshot_commands.items()}
            return CommandSnapshots(lambda: self.remotes.get(host), commands, timeout=hypervisor.timeout)
        return None

    def check(self, spec: CheckSpec, host: HostSpec, secrets: SecretValues) -> Check:
        """The adapter for one check, with secrets put in (labels keep their tokens)."""
        if spec.kind == "http":
            return HTTPCheck(
                secrets.url(spec.url),
                name=spec.label,
                status=spec.status,
                contains=spec.contains,
                json=spec.json_fields,
                headers={name: secrets.text(value) for name, value in spec.headers.items()},
                timeout=spec.timeout,
            )
        if spec.kind == "tcp":
            return TCPCheck(spec.address, spec.port, name=spec.label, timeout=spec.timeout)
        return RemoteCommandCheck(
            lambda: self.remotes.get(host), secrets.shell(spec.command), name=spec.label, timeout=spec.timeout
        )

    def adapters(self, spec: RolloutSpec) -> Adapters:
        secrets = SecretValues(spec.secrets)
        return Adapters(
            lb=self.loadbalancer(spec.loadbalancer),
            snapshots=lambda host: self.snapshots(spec, host, secrets),
            remotes=self.remotes,
            check=lambda check, host: self.check(check, host, secrets),
            secrets=secrets,
        )

    def close(self) -> None:
        self.ssh.close_all()
        for snapshots in self._libvirt.values():
            snapshots.close()
