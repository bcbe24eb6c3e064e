"""Pure parsing of libvirt's snapshot XML (``virDomainSnapshot.getXMLDesc()``); no libvirt import."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from orchestrator.errors import HypervisorError


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    state: str  # domain state when taken: "running", "paused", "shutoff", "disk-snapshot", ...
    created: int  # creationTime, seconds since the epoch
    memory: str  # <memory snapshot=...>: "internal", "external" or "no"
    parent: str | None

    @property
    def has_memory(self) -> bool:
        """True if reverting resumes the guest's processes rather than booting from the disk state."""
        return self.memory in ("internal", "external")


def parse_snapshot_xml(xml: str, *, domain: str) -> SnapshotInfo:
    """Read what the adapter needs from one ``<domainsnapshot>`` document.

    ``domain`` only names the VM in the error if libvirt handed us something unreadable.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HypervisorError(
            f"libvirt returned unreadable snapshot XML for domain {domain!r}: {exc}", domain=domain
        ) from exc
    if root.tag != "domainsnapshot":
        raise HypervisorError(
            f"libvirt returned <{root.tag}> instead of <domainsnapshot> for domain {domain!r}", domain=domain
        )
    name = (root.findtext("name") or "").strip()
    if not name:
        raise HypervisorError(f"libvirt snapshot XML for domain {domain!r} has no <name>", domain=domain)
    created_text = (root.findtext("creationTime") or "0").strip()
    try:
        created = int(created_text)
    except ValueError as exc:
        raise HypervisorError(
            f"snapshot {name!r} of domain {domain!r} has a bad <creationTime> {created_text!r}",
            domain=domain,
            snapshot=name,
        ) from exc
    memory_el = root.find("memory")
    # libvirt omits <memory> only in old or hand-written XML; without it there is no memory state.
    memory = memory_el.get("snapshot", "no") if memory_el is not None else "no"
    parent = root.findtext("parent/name")
    return SnapshotInfo(
        name=name,
        state=(root.findtext("state") or "").strip(),
        created=created,
        memory=memory,
        parent=parent.strip() if parent else None,
    )
