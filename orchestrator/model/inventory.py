"""The inventory: where the servers are and how to reach them.

```yaml
vars: {env: prod}                       # optional, for every host
pools:
  web:
    loadbalancer: {type: haproxy, socket: /run/haproxy/admin.sock, backend: app,
                   config: /etc/haproxy/haproxy.cfg}   # config: optional, for the preflight
    hypervisor: {type: libvirt, uri: "qemu:///system"}
    ssh: {user: root, port: 22, key: keys/id_ed25519, known_hosts: keys/known_hosts}
    vars: {app_port: 8080}
    hosts:
      web1: {address: 10.0.0.11, domain: web1-vm, lb_server: web1, vars: {zone: a}}
```

Relative paths are resolved against the inventory file's folder. ``ssh`` set on a host overrides the
pool's field by field. ``hypervisor`` may instead be ``{type: command, create: ..., revert: ...,
delete: ...}``: snapshots made by commands over SSH (LVM, ZFS, btrfs, or a copy), for hosts that are
not VMs.

Names become parts of commands (HAProxy runtime API lines, libvirt calls, file names), so each has a
strict character set, checked here: pool and host names ``[A-Za-z0-9][A-Za-z0-9_.-]*``; HAProxy backend
and server names HAProxy's own set (letters, digits, ``_ . : -``); libvirt domains
``[A-Za-z0-9][A-Za-z0-9_.+-]*``; addresses an IP address or a DNS name. Secrets are declared by where
their value lives (``secrets: {db_password: {env: DXCARE_DB_PASSWORD}}``, see ``model.secrets``), at the
top level or in a pool.

``hypervisor.uri`` must pass ``orchestrator.model.libvirt_uri.check_uri`` (no ``qemu+ssh``, no
``no_verify``, ``command`` or ``netcat``, ...: host keys come only from the inventory). A hypervisor reached
over SSH takes its host keys and key from the inventory too::

    hypervisor: {type: libvirt, uri: "qemu+libssh2://root@hv1/system", known_hosts: keys/hv_known_hosts,
                 key: keys/hv_id_ed25519}

``known_hosts`` (required for ``qemu+libssh2``/``qemu+libssh``) defaults to the pool's ``ssh.known_hosts``:
a list of trusted host keys, not a credential, so the fallback trusts nothing the inventory does not name.
``key`` has no default: the hypervisor host is another machine than the pool's servers, and reusing their
key there is a decision to write down (without it libvirt offers the worker's SSH agent and ~/.ssh keys).
Both are resolved like ``ssh.key`` and refused for transports that do not use them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from orchestrator.model.base import Port, Strict, Timeout
from orchestrator.model.libvirt_uri import SSH_TRANSPORTS, check_uri, connection_uri, transport
from orchestrator.model.playbook import Command
from orchestrator.model.secrets import SecretName, SecretSource
from orchestrator.model.yamlfile import LineMap, load

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
# HAProxy's own charset for proxy and server names: anything else could split a runtime API line.
LBName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=64)]
DomainName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=64)]
UserName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=32)]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)


def check_address(address: str) -> str:
    """An IP address or a DNS name: what lands in URLs, TCP connects and SSH, nothing else."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    if not _HOSTNAME.match(address):
        raise ValueError(
            f"address {address!r} is not an IP address or a host name; e.g. 10.0.0.11 or web1.example"
        )
    return address


Address = Annotated[str, AfterValidator(check_address)]


def check_host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {text!r} is not host:port; e.g. 127.0.0.1:9999 or [::1]:9999")
    try:
        check_address(host)
    except ValueError:
        raise ValueError(
            f"address {text!r}: {host!r} is not an IP address or a host name; "
            "e.g. 127.0.0.1:9999 or [::1]:9999"
        ) from None
    return text


class HAProxyConfig(Strict):
    type: Literal["haproxy"] = "haproxy"
    socket: Path | None = None  # unix socket of the runtime API ("stats socket ... level admin")
    address: Annotated[str, AfterValidator(check_host_port)] | None = (
        None  # or host:port of a TCP runtime API
    )
    backend: LBName
    timeout: Timeout = 5.0
    # HAProxy's own haproxy.cfg, readable here: the preflight reads it to tell whether a reload keeps
    # the server states this orchestrator sets (the runtime API cannot show the configuration).
    config: Path | None = None

    @field_validator("socket", mode="before")
    @classmethod
    def _socket_given(cls, socket: Any) -> Any:
        if isinstance(socket, str) and not socket.strip():
            raise ValueError("socket is empty; the path of HAProxy's `stats socket ... level admin`")
        return socket

    @model_validator(mode="after")
    def _one_endpoint(self) -> HAProxyConfig:
        if (self.socket is None) == (self.address is None):
            raise ValueError("give exactly one of 'socket' or 'address'; the HAProxy runtime API endpoint")
        return self


class LibvirtConfig(Strict):
    type: Literal["libvirt"] = "libvirt"
    # Declared before ``uri`` so that its check sees them, and a transport that lacks one is reported
    # at the uri's line, where the transport is named.
    known_hosts: Path | None = None  # libssh/libssh2 transports: the hypervisor hosts' keys
    key: Path | None = None  # libssh/libssh2 transports: the private key to log in with
    uri: str = "qemu:///system"
    # The longest a libvirt call may take (a memory snapshot of a large VM writes its RAM); past it the
    # hypervisor counts as not answering. Keepalives notice a stopped libvirtd sooner (~15 s).
    timeout: Timeout = 300.0

    @field_validator("uri")
    @classmethod
    def _uri_and_its_files(cls, uri: str, info: ValidationInfo) -> str:
        check_uri(uri)
        # raises what does not fit the transport (a known_hosts file for libssh2, none for tcp...)
        connection_uri(uri, known_hosts=info.data.get("known_hosts"), key=info.data.get("key"))
        return uri


class CommandSnapshotConfig(Strict):
    """Snapshots taken by shell commands on the host itself. ``{{ snapshot }}`` names the snapshot."""

    type: Literal["command"]
    create: Command
    revert: Command
    delete: Command
    timeout: Timeout = 120.0


class NoSnapshots(Strict):
    type: Literal["none"]


HypervisorConfig = Annotated[LibvirtConfig | CommandSnapshotConfig | NoSnapshots, Field(discriminator="type")]


class SSHConfig(Strict):
    user: UserName | None = None
    port: Port | None = None
    key: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: Timeout | None = None

    def over(self, base: SSHConfig) -> SSHConfig:
        """This config's fields where set, ``base``'s elsewhere."""
        merged = base.model_dump() | {k: v for k, v in self.model_dump().items() if v is not None}
        return SSHConfig(**merged)


class Host(Strict):
    address: Address
    domain: DomainName | None = None  # VM domain name at the hypervisor; defaults to the host name
    lb_server: LBName | None = None  # server name in the load balancer backend; defaults to the host name
    ssh: SSHConfig = SSHConfig()
    vars: dict[str, Any] = {}


class Pool(Strict):
    loadbalancer: HAProxyConfig
    hypervisor: HypervisorConfig = LibvirtConfig()
    ssh: SSHConfig = SSHConfig()
    vars: dict[str, Any] = {}
    secrets: dict[SecretName, SecretSource] = {}
    hosts: dict[Name, Host]

    @model_validator(mode="before")
    @classmethod
    def _hypervisor_known_hosts_default(cls, data: Any) -> Any:
        """An SSH-reached hypervisor checks host keys against the pool's ssh.known_hosts unless told."""
        if not isinstance(data, dict):
            return data
        hypervisor, ssh = data.get("hypervisor"), data.get("ssh")
        if not isinstance(hypervisor, dict) or not isinstance(ssh, dict):
            return data
        if hypervisor.get("type") != "libvirt" or hypervisor.get("known_hosts") is not None:
            return data
        if ssh.get("known_hosts") is None:
            return data
        try:
            over_ssh = transport(str(hypervisor.get("uri", ""))) in SSH_TRANSPORTS
        except ValueError:
            return data  # the uri's own validator reports it, at its line
        if over_ssh:
            return {**data, "hypervisor": {**hypervisor, "known_hosts": ssh["known_hosts"]}}
        return data

    @field_validator("hosts")
    @classmethod
    def _not_empty(cls, hosts: dict[str, Host]) -> dict[str, Host]:
        if not hosts:
            raise ValueError("a pool has no hosts; list at least one host under 'hosts'")
        return hosts


class Inventory(Strict):
    vars: dict[str, Any] = {}
    secrets: dict[SecretName, SecretSource] = {}
    pools: dict[Name, Pool]

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, data: Any, info: ValidationInfo) -> Any:
        """Relative paths count from the inventory's folder, not from wherever the CLI was started.
        Anything not shaped as expected is left for the schema to report."""
        base = (info.context or {}).get("base_dir")
        if base is None or not isinstance(data, dict):
            return data

        def fix(section: Any, *keys: str) -> None:
            if isinstance(section, dict):
                for key in keys:
                    value = section.get(key)
                    if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
                        section[key] = str(Path(base) / section[key])

        def fix_secrets(secrets: Any) -> None:
            if isinstance(secrets, dict):
                for source in secrets.values():
                    fix(source, "file")

        fix_secrets(data.get("secrets"))
        pools = data.get("pools")
        for pool in pools.values() if isinstance(pools, dict) else ():
            if not isinstance(pool, dict):
                continue
            fix(pool.get("ssh"), "key", "known_hosts")
            fix(pool.get("hypervisor"), "key", "known_hosts")  # libvirt over SSH: its own key and known_hosts
            fix(pool.get("loadbalancer"), "socket", "config")
            fix_secrets(pool.get("secrets"))
            hosts = pool.get("hosts")
            for host in hosts.values() if isinstance(hosts, dict) else ():
                if isinstance(host, dict):
                    fix(host.get("ssh"), "key", "known_hosts")
        return data


def load_inventory(path: Path) -> tuple[Inventory, LineMap]:
    return load(Inventory, path, context={"base_dir": str(path.resolve().parent)})
