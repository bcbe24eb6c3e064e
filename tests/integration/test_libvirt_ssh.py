"""libvirt over libssh2 and libssh through a real sshd on loopback: the host key comes only from the
known_hosts that connection_uri names.

No libvirtd listens behind this sshd, so even an accepted connection fails afterwards (the remote
virt-ssh-helper finds no daemon). The tests tell the two failures apart: a refused host key is refused
before authentication (libvirt says so, and sshd logs no login), an accepted one gets as far as a logged-in
session (sshd logs "Accepted publickey") and fails later for another reason.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from orchestrator.adapters.hypervisors.libvirt import LibvirtSnapshots
from orchestrator.errors import HypervisorError
from orchestrator.lab.sshd import LabHost, generate_keypair, known_hosts_name, running_sshd
from orchestrator.model.libvirt_uri import check_uri, connection_uri

pytestmark = pytest.mark.integration

ADDRESS = "127.88.0.1"
PORTS = range(2300, 2400)  # the loopback ports these tests may use
TRANSPORTS = ["libssh2", "libssh"]
REFUSED_KEY = ("HOST KEY VERIFICATION FAILED", "Can't verify the session host key")


def port_in_range() -> int:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((ADDRESS, port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port on {ADDRESS} in {PORTS.start}-{PORTS.stop - 1}")


@dataclass(frozen=True)
class Hypervisor:
    lab: LabHost
    other_known_hosts: Path  # the right host name and port, someone else's key
    empty_known_hosts: Path

    def logins(self) -> int:
        return self.lab.sshd.log.read_text(errors="replace").count("Accepted publickey")

    def uri(self, transport: str, known_hosts: Path) -> str:
        base = check_uri(f"qemu+{transport}://root@{ADDRESS}:{self.lab.target.port}/system?proxy=native")
        return connection_uri(base, known_hosts=known_hosts, key=self.lab.target.key_file)


@pytest.fixture(scope="module")
def hypervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypervisor]:
    libvirt.registerErrorHandler(lambda *_a: None, None)
    workdir = tmp_path_factory.mktemp("libvirt-ssh")
    with running_sshd(workdir, host="hv1", address=ADDRESS, port=port_in_range()) as lab:
        other_type, other_key = generate_keypair(workdir / "other_host_key").split()[:2]
        other = workdir / "other_known_hosts"
        other.write_text(f"{known_hosts_name(ADDRESS, lab.target.port)} {other_type} {other_key}\n")
        empty = workdir / "empty_known_hosts"
        empty.write_text("")
        yield Hypervisor(lab, other, empty)


def open_error(uri: str) -> str:
    """libvirt's message for opening uri (every open here fails: no libvirtd behind the sshd)."""
    with pytest.raises(libvirt.libvirtError) as raised:
        libvirt.open(uri).close()
    return str(raised.value.get_error_message())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_host_key_in_the_given_known_hosts_is_accepted(hypervisor: Hypervisor, transport: str) -> None:
    known_hosts = hypervisor.lab.target.known_hosts
    before, logins = known_hosts.read_text(), hypervisor.logins()
    message = open_error(hypervisor.uri(transport, known_hosts))
    assert not any(words in message for words in REFUSED_KEY), message
    assert hypervisor.logins() == logins + 1  # host key accepted, then logged in with the key
    assert known_hosts.read_text() == before


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_another_key_for_the_host_is_refused_before_login(hypervisor: Hypervisor, transport: str) -> None:
    logins = hypervisor.logins()
    message = open_error(hypervisor.uri(transport, hypervisor.other_known_hosts))
    assert "HOST KEY VERIFICATION FAILED" in message
    assert hypervisor.logins() == logins


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_host_missing_from_known_hosts_is_refused_and_not_recorded(
    hypervisor: Hypervisor, transport: str
) -> None:
    logins = hypervisor.logins()
    message = open_error(hypervisor.uri(transport, hypervisor.empty_known_hosts))
    assert "Can't verify the session host key" in message  # known_hosts_verify=normal, nobody to ask
    assert hypervisor.logins() == logins
    assert hypervisor.empty_known_hosts.read_text() == ""  # never accepted and written down


@pytest.mark.parametrize(
    "bypass",
    [
        "known_hosts_verify=ignore",
        "KNOWN_HOSTS_VERIFY=ignore",
        "%6Bnown_hosts_verify=ignore",
    ],
)
def test_negative_control_what_check_uri_refuses_would_have_skipped_the_check(
    hypervisor: Hypervisor, bypass: str
) -> None:
    # Appended after connection_uri's own known_hosts_verify=normal, as a hand-written URI could.
    raw = f"{hypervisor.uri('libssh2', hypervisor.empty_known_hosts)}&{bypass}"
    logins = hypervisor.logins()
    message = open_error(raw)
    assert not any(words in message for words in REFUSED_KEY), message
    assert hypervisor.logins() == logins + 1  # libvirt logged in to a host no known_hosts lists
    with pytest.raises(ValueError, match="known_hosts"):
        check_uri(f"qemu+libssh2://root@{ADDRESS}:{hypervisor.lab.target.port}/system?{bypass}")


def test_the_adapter_reports_a_refused_host_key_and_does_not_retry_it(hypervisor: Hypervisor) -> None:
    snaps = LibvirtSnapshots(hypervisor.uri("libssh2", hypervisor.other_known_hosts))
    try:
        with pytest.raises(HypervisorError) as raised:
            snaps.list("vm1")
    finally:
        snaps.close()
    assert "HOST KEY VERIFICATION FAILED" in str(raised.value)
    assert "cannot connect to libvirt" in str(raised.value) and "domain 'vm1'" in str(raised.value)
    assert raised.value.transient is False  # a changed host key is never something to retry
