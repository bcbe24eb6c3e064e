"""Named snapshots of libvirt domains (QEMU in the lab, the ``test:///`` driver in fast tests).

Snapshots are *internal*: stored inside the domain's qcow2 disk, managed by libvirt, no extra files.

``memory=True`` takes a full system checkpoint (RAM + disk); a revert resumes the guest where it was.
``memory=False`` asks libvirt for its default internal snapshot and nothing more specific, because:

- QEMU cannot take an internal disk-only snapshot of a running VM (libvirtd 9.0 answers "internal snapshot
  of a running VM must include the memory state"), so for a running domain the result is the same full
  checkpoint as ``memory=True`` (~95 MiB of RAM state added to the qcow2 per snapshot);
- the other disk-only kind, an external DISK_ONLY snapshot, must not be mixed with internal snapshots on one
  disk, and the test driver does not support it at all;
- for a shut-off domain the snapshot holds the disk only, and a revert boots from it.

So ``memory=False`` means "memory state not required", never "memory state refused". ``memory=True`` on a
domain that is not running is an error, as is reusing a same-named snapshot that holds no memory state.
"""

from __future__ import annotations

import builtins
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import libvirt

from orchestrator.adapters.hypervisors.libvirt_parse import SnapshotInfo, parse_snapshot_xml
from orchestrator.errors import HypervisorError

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by guest power management",
}
_MAX_NAMES_SHOWN = 20
# A remote libvirtd that misses this many keepalives this many seconds apart is taken as gone.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
T = TypeVar("T")

_loop_lock = threading.Lock()
_loop_started = False


def _start_event_loop() -> None:
    """libvirt's keepalives need a client event loop: once per process, in a daemon thread, before the
    first connection opens."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_events, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _run_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _close_quietly(conn: Any) -> None:
    with suppress(libvirt.libvirtError):
        conn.close()


def _silence_libvirt_stderr() -> None:
    # libvirt prints every error to stderr by default; ours go into HypervisorError messages instead.
    libvirt.registerErrorHandler(lambda *_args: None, None)


def _is_connect_failure(exc: libvirt.libvirtError) -> bool:
    """libvirtd not running, socket missing, connection refused: nothing happened yet, so retrying is safe."""
    return bool(
        exc.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR
        and exc.get_error_domain() in (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE)
    )


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(sorted(names)[:_MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else "")


class LibvirtSnapshots:
    """The ``Snapshots`` protocol over one libvirt connection, opened on first use and reused.

    libvirt connections are thread-safe, so the lock only guards opening, replacing and closing it;
    operations on different domains run concurrently.
    """

    def __init__(self, uri: str, *, call_timeout: float = 300.0) -> None:
        self.uri = uri
        self.call_timeout = call_timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="libvirt")
        _silence_libvirt_stderr()
        _start_event_loop()

    # -- the Snapshots protocol: each call bounded ------------------------------------------------------

    def create(self, domain: str, name: str, *, memory: bool) -> None:
        self._bounded("create snapshot", domain, name, lambda: self._create(domain, name, memory=memory))

    def revert(self, domain: str, name: str) -> None:
        self._bounded("revert to snapshot", domain, name, lambda: self._revert(domain, name))

    def delete(self, domain: str, name: str) -> None:
        self._bounded("delete snapshot", domain, name, lambda: self._delete(domain, name))

    def list(self, domain: str) -> list[str]:
        names: list[str] = self._bounded("list snapshots", domain, "", lambda: self._list(domain))
        return names

    def info(self, domain: str, name: str) -> SnapshotInfo | None:
        """What libvirt says about snapshot ``name`` (None if it does not exist)."""
        found: SnapshotInfo | None = self._bounded(
            "describe snapshot", domain, name, lambda: self._info(domain, name)
        )
        return found

    def _bounded(self, action: str, domain: str, snapshot: str, call: Callable[[], T]) -> T:
        """A libvirt call with a deadline. libvirt blocks without one: a daemon that stopped answering
        (SIGSTOP, a hung host) would hold the host out of its pool for good. Keepalives notice a dead
        daemon within ~15 s on remote connections; this bound is the backstop for everything else."""
        with self._lock:
            calls = self._calls
        future = calls.submit(call)
        try:
            return future.result(timeout=self.call_timeout)
        except FutureTimeout:
            self._abandon()
            what = f"{action} {snapshot!r} of" if snapshot else f"{action} of"
            raise HypervisorError(
                f"libvirt ({self.uri}) did not answer within {self.call_timeout:g}s to {what} domain "
                f"{domain!r}; is libvirtd stopped or overloaded? The connection was dropped; the next call "
                "reconnects",
                domain=domain,
                snapshot=snapshot,
                unanswered=True,
            ) from None

    def _abandon(self) -> None:
        """Leave a stuck connection and its threads behind (they end when libvirtd answers or the
        connection dies); the next call opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
            stuck, self._calls = self._calls, ThreadPoolExecutor(max_workers=8, thread_name_prefix="libvirt")
        stuck.shutdown(wait=False)
        if conn is not None:
            threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()

    def _create(self, domain: str, name: str, *, memory: bool) -> None:
        conn = self._connection(domain, name)
        with self._errors("create snapshot", domain, name):
            dom = self._domain(conn, domain, name)
            existing = self._find(dom, name)
            if existing is not None:
                self._check_reusable(existing, domain, name, memory=memory)
                return
            if memory and not dom.isActive():
                raise HypervisorError(
                    f"cannot take a memory snapshot {name!r} of domain {domain!r} ({self.uri}): the domain "
                    f"is {self._state(dom)}, not running; start it (`virsh -c {self.uri} start {domain}`)",
                    domain=domain,
                    snapshot=name,
                )
            try:
                # ATOMIC: on failure libvirt leaves no half-made snapshot behind, so a retry starts clean.
                dom.snapshotCreateXML(
                    _snapshot_xml(name, memory=memory), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                )
            except libvirt.libvirtError:
                # Someone (a retried step in another worker) created it between our lookup and create.
                raced = self._find(dom, name)
                if raced is None:
                    raise
                self._check_reusable(raced, domain, name, memory=memory)

    def _revert(self, domain: str, name: str) -> None:
        conn = self._connection(domain, name)
        with self._errors("revert to snapshot", domain, name):
            dom = self._domain(conn, domain, name)
            snap = self._find(dom, name)
            if snap is None:
                raise HypervisorError(
                    f"cannot revert domain {domain!r} ({self.uri}) to snapshot {name!r}: no such snapshot; "
                    f"the domain's snapshots: {_names(list(dom.snapshotListNames(0)))}",
                    domain=domain,
                    snapshot=name,
                )
            dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
            # REVERT_RUNNING should be enough, but not every driver honours it for a snapshot of a stopped
            # domain (the test driver leaves it shut off): start or resume it once, then insist.
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_SHUTOFF:
                dom.create()
            elif state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise HypervisorError(
                    f"reverted domain {domain!r} ({self.uri}) to snapshot {name!r} but it is "
                    f"{self._state(dom)}, not running; see `virsh -c {self.uri} domstate --reason {domain}`",
                    domain=domain,
                    snapshot=name,
                )

    def _delete(self, domain: str, name: str) -> None:
        conn = self._connection(domain, name)
        with self._errors("delete snapshot", domain, name):
            dom = self._domain(conn, domain, name)
            snap = self._find(dom, name)
            if snap is None:
                return
            try:
                # Flags 0: only this snapshot; its children (if any) are re-parented, not deleted.
                snap.delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                    raise

    def _list(self, domain: str) -> builtins.list[str]:
        conn = self._connection(domain, "")
        with self._errors("list snapshots", domain, ""):
            dom = self._domain(conn, domain, "")
            # Topological: parents before children, i.e. roughly the order they were taken.
            return [str(n) for n in dom.snapshotListNames(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)]

    # -- more than the protocol -------------------------------------------------------------------------

    def _info(self, domain: str, name: str) -> SnapshotInfo | None:
        conn = self._connection(domain, name)
        with self._errors("describe snapshot", domain, name):
            snap = self._find(self._domain(conn, domain, name), name)
            return None if snap is None else parse_snapshot_xml(str(snap.getXMLDesc(0)), domain=domain)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(libvirt.libvirtError):  # already broken: nothing left to release
                conn.close()

    def __enter__(self) -> LibvirtSnapshots:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _connection(self, domain: str, snapshot: str) -> Any:
        """The shared connection, opened on first use. The lock is never held across the open: a
        libvirtd that accepts but never answers (stopped, hung) blocks the open, and every other call
        and the deadline's clean-up must still get through to report it."""
        with self._lock:
            if self._conn is not None:
                return self._conn
        conn = self._open(domain, snapshot)
        with self._lock:
            if self._conn is None:
                self._conn = conn
                return conn
            existing = self._conn  # another call opened one meanwhile: use that one
        _close_quietly(conn)
        return existing

    def _open(self, domain: str, snapshot: str) -> Any:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            transient = _is_connect_failure(exc)
            hint = (
                " Is libvirtd running and is its socket where the URI says?"
                if transient
                else " Check the URI (e.g. qemu:///system, test:///default)."
            )
            raise HypervisorError(
                f"cannot connect to libvirt at {self.uri!r} (needed for domain {domain!r}): "
                f"{exc.get_error_message()}.{hint}",
                domain=domain,
                snapshot=snapshot,
                transient=transient,
            ) from exc
        with suppress(libvirt.libvirtError):  # local drivers (test:///) have no keepalive
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        return conn

    @contextmanager
    def _errors(self, action: str, domain: str, snapshot: str) -> Iterator[None]:
        """Turn any libvirtError into a HypervisorError that names the URI, domain, snapshot and cause."""
        try:
            yield
        except libvirt.libvirtError as exc:
            lost = self._drop_if_dead()
            what = f"{action} {snapshot!r} of" if snapshot else f"{action} of"
            message = f"libvirt ({self.uri}) failed to {what} domain {domain!r}: {exc.get_error_message()}"
            if lost:
                message += "; the connection to libvirt was lost (the next call reconnects)"
            # Never transient: the operation may have half-run on the hypervisor side. A lost connection
            # is a hypervisor that stopped answering.
            raise HypervisorError(message, domain=domain, snapshot=snapshot, unanswered=lost) from exc

    def _drop_if_dead(self) -> bool:
        with self._lock:
            conn = self._conn
        try:
            alive = conn is None or bool(conn.isAlive())
        except libvirt.libvirtError:
            alive = False
        if alive:
            return False
        with self._lock:
            if self._conn is conn:
                self._conn = None
        threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()
        return True

    def _domain(self, conn: Any, domain: str, snapshot: str) -> Any:
        try:
            return conn.lookupByName(domain)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            try:
                known = _names([str(d.name()) for d in conn.listAllDomains(0)])
            except libvirt.libvirtError:
                known = f"(could not list them: run `virsh -c {self.uri} list --all`)"
            raise HypervisorError(
                f"libvirt at {self.uri} has no domain named {domain!r}; known domains: {known}. "
                "Check the inventory's domain name for this host.",
                domain=domain,
                snapshot=snapshot,
            ) from exc

    @staticmethod
    def _find(dom: Any, name: str) -> Any:
        try:
            return dom.snapshotLookupByName(name, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return None
            raise

    def _check_reusable(self, snap: Any, domain: str, name: str, *, memory: bool) -> None:
        info = parse_snapshot_xml(str(snap.getXMLDesc(0)), domain=domain)
        if memory and not info.has_memory:
            raise HypervisorError(
                f"snapshot {name!r} of domain {domain!r} ({self.uri}) already exists but holds no memory "
                f"state (taken while the domain was {info.state or 'not running'}) and a memory snapshot was "
                f"asked for; delete it (`virsh -c {self.uri} snapshot-delete {domain} {name}`) or rename",
                domain=domain,
                snapshot=name,
            )

    @staticmethod
    def _state(dom: Any) -> str:
        code = int(dom.state()[0])
        return _STATE_NAMES.get(code, f"in state {code}")


def _snapshot_xml(name: str, *, memory: bool) -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = "taken by the rolling update orchestrator"
    if memory:
        ET.SubElement(root, "memory", snapshot="internal")
    return ET.tostring(root, encoding="unicode")
