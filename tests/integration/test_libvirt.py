"""LibvirtSnapshots against libvirt's in-process test driver.

``test:///default`` is one shared object per process, so each test defines its own uniquely named domain
there (and removes it, snapshots included) instead of touching the driver's built-in domain "test".
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from orchestrator.adapters.hypervisors.libvirt import LibvirtSnapshots
from orchestrator.errors import HypervisorError

pytestmark = pytest.mark.integration

URI = "test:///default"


@pytest.fixture
def snaps() -> Iterator[LibvirtSnapshots]:
    adapter = LibvirtSnapshots(URI)
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def conn() -> Iterator[Any]:
    """Our own connection, to stop and inspect domains behind the adapter's back."""
    libvirt.registerErrorHandler(lambda *_a: None, None)
    c = libvirt.open(URI)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def domain(conn: Any) -> Iterator[str]:
    """A running, persistent domain of our own, undefined with all its snapshots afterwards."""
    name = f"vm-{uuid.uuid4().hex[:8]}"
    dom = conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    )
    dom.create()
    try:
        yield name
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def is_running(conn: Any, domain: str) -> bool:
    return bool(conn.lookupByName(domain).state()[0] == libvirt.VIR_DOMAIN_RUNNING)


def test_create_list_revert_delete(snaps: LibvirtSnapshots, conn: Any, domain: str) -> None:
    snaps.create(domain, "before-update", memory=True)
    snaps.create(domain, "second", memory=True)
    assert snaps.list(domain) == ["before-update", "second"]
    info = snaps.info(domain, "before-update")
    assert info is not None and info.has_memory and info.state == "running"

    snaps.revert(domain, "before-update")
    assert is_running(conn, domain)

    snaps.delete(domain, "before-update")
    assert snaps.list(domain) == ["second"]
    snaps.delete(domain, "second")
    assert snaps.list(domain) == []


def test_create_is_idempotent(snaps: LibvirtSnapshots, domain: str) -> None:
    snaps.create(domain, "s1", memory=True)
    first = snaps.info(domain, "s1")
    snaps.create(domain, "s1", memory=True)
    snaps.create(domain, "s1", memory=False)
    assert snaps.list(domain) == ["s1"]
    assert snaps.info(domain, "s1") == first  # reused, not re-taken


def test_concurrent_creates_of_one_name_make_one_snapshot(snaps: LibvirtSnapshots, domain: str) -> None:
    errors: list[BaseException] = []

    def take() -> None:
        try:
            snaps.create(domain, "same", memory=True)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert snaps.list(domain) == ["same"]


def test_memory_false_on_running_domain_keeps_memory(snaps: LibvirtSnapshots, domain: str) -> None:
    snaps.create(domain, "plain", memory=False)
    info = snaps.info(domain, "plain")
    assert info is not None and info.has_memory


def test_revert_starts_a_stopped_domain(snaps: LibvirtSnapshots, conn: Any, domain: str) -> None:
    snaps.create(domain, "good", memory=True)
    conn.lookupByName(domain).destroy()
    assert not is_running(conn, domain)
    snaps.revert(domain, "good")
    assert is_running(conn, domain)


def test_revert_to_a_disk_only_snapshot_leaves_domain_running(
    snaps: LibvirtSnapshots, conn: Any, domain: str
) -> None:
    conn.lookupByName(domain).destroy()
    snaps.create(domain, "offline", memory=False)
    info = snaps.info(domain, "offline")
    assert info is not None and not info.has_memory
    snaps.revert(domain, "offline")
    assert is_running(conn, domain)


def test_memory_snapshot_of_a_stopped_domain_is_refused(
    snaps: LibvirtSnapshots, conn: Any, domain: str
) -> None:
    conn.lookupByName(domain).destroy()
    with pytest.raises(HypervisorError) as err:
        snaps.create(domain, "mem", memory=True)
    assert "not running" in str(err.value) and domain in str(err.value)
    assert (err.value.domain, err.value.snapshot, err.value.transient) == (domain, "mem", False)
    assert snaps.list(domain) == []


def test_reusing_a_disk_only_snapshot_for_memory_is_refused(
    snaps: LibvirtSnapshots, conn: Any, domain: str
) -> None:
    dom = conn.lookupByName(domain)
    dom.destroy()
    snaps.create(domain, "s", memory=False)
    dom.create()
    with pytest.raises(HypervisorError) as err:
        snaps.create(domain, "s", memory=True)
    assert "holds no memory state" in str(err.value) and "snapshot-delete" in str(err.value)


def test_delete_missing_is_not_an_error(snaps: LibvirtSnapshots, domain: str) -> None:
    snaps.delete(domain, "never-taken")
    snaps.create(domain, "once", memory=True)
    snaps.delete(domain, "once")
    snaps.delete(domain, "once")
    assert snaps.list(domain) == []


def test_unknown_domain_lists_known_ones(snaps: LibvirtSnapshots, domain: str) -> None:
    for call in (
        lambda: snaps.create("no-such-vm", "s", memory=True),
        lambda: snaps.revert("no-such-vm", "s"),
        lambda: snaps.delete("no-such-vm", "s"),
        lambda: snaps.list("no-such-vm"),
    ):
        with pytest.raises(HypervisorError) as err:
            call()
        text = str(err.value)
        assert "'no-such-vm'" in text and "known domains" in text and domain in text and URI in text
        assert err.value.domain == "no-such-vm" and not err.value.transient


def test_revert_to_unknown_snapshot_names_existing_ones(snaps: LibvirtSnapshots, domain: str) -> None:
    snaps.create(domain, "real", memory=True)
    with pytest.raises(HypervisorError) as err:
        snaps.revert(domain, "imaginary")
    text = str(err.value)
    assert "'imaginary'" in text and "no such snapshot" in text and "real" in text and domain in text
    assert (err.value.snapshot, err.value.transient) == ("imaginary", False)


def test_libvirt_errors_are_wrapped_with_context(snaps: LibvirtSnapshots, domain: str) -> None:
    # A name libvirt's XML parser rejects: its message must survive, with domain and snapshot named.
    with pytest.raises(HypervisorError) as err:
        snaps.create(domain, "bad\x01name", memory=True)
    text = str(err.value)
    assert "failed to create snapshot 'bad\\x01name' of domain" in text and domain in text and URI in text
    assert "PCDATA invalid Char" in text
    assert (err.value.snapshot, err.value.transient) == ("bad\x01name", False)
    assert isinstance(err.value.__cause__, libvirt.libvirtError)


def test_missing_socket_is_transient_and_names_the_uri() -> None:
    uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    with LibvirtSnapshots(uri) as snaps, pytest.raises(HypervisorError) as err:
        snaps.list("vm1")
    assert err.value.transient
    assert uri in str(err.value) and "/nonexistent/libvirt-sock" in str(err.value)
    assert err.value.domain == "vm1"


def test_bad_uri_is_not_transient() -> None:
    with LibvirtSnapshots("nonsense") as snaps, pytest.raises(HypervisorError) as err:
        snaps.create("vm1", "s", memory=True)
    assert not err.value.transient
    assert "'nonsense'" in str(err.value) and "'vm1'" in str(err.value)


def test_close_then_use_reconnects(snaps: LibvirtSnapshots, domain: str) -> None:
    snaps.create(domain, "s", memory=True)
    snaps.close()
    snaps.close()
    assert snaps.list(domain) == ["s"]


def test_a_libvirtd_that_accepts_but_never_answers_fails_every_call_within_the_bound(tmp_path: Path) -> None:
    """What a stopped (SIGSTOP) or hung libvirtd looks like to a client: the kernel accepts the
    connection, nothing ever answers. The open itself blocks; each call must still end, unanswered,
    including calls made while an earlier one is still stuck in its open."""
    path = tmp_path / "libvirt-sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(path))
    silent.listen(16)
    snaps = LibvirtSnapshots(f"qemu+unix:///system?socket={path}", call_timeout=1.0)
    errors: list[HypervisorError] = []

    def call(action: Callable[[], object]) -> None:
        try:
            action()
        except HypervisorError as exc:
            errors.append(exc)

    calls = [
        lambda: snaps.list("vm1"),
        lambda: snaps.create("vm1", "s", memory=True),
        lambda: snaps.info("vm1", "s"),
    ]
    threads = [threading.Thread(target=call, args=(action,), daemon=True) for action in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)  # a hang is the failure; the bound is 1 s
    assert not any(t.is_alive() for t in threads), "a libvirt call did not end"
    assert len(errors) == 3 and all(e.unanswered for e in errors), errors
    assert "did not answer within 1s" in str(errors[0]) and "'vm1'" in str(errors[0])
    silent.close()
