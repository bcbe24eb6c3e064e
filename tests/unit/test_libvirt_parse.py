"""libvirt snapshot XML parsing, on XML captured from the test driver and from libvirtd 9.0 + QEMU 7.2."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.hypervisors.libvirt_parse import SnapshotInfo, parse_snapshot_xml
from orchestrator.errors import HypervisorError

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "libvirt_snapshot_qemu.xml",
            SnapshotInfo("before-update", "running", 1795945023, "internal", None),
        ),
        (
            "libvirt_snapshot_running.xml",
            SnapshotInfo("child", "running", 1795945015, "internal", "before-update"),
        ),
        (
            "libvirt_snapshot_shutoff.xml",
            SnapshotInfo("offline", "shutoff", 1795945015, "no", "child"),
        ),
    ],
)
def test_captured_xml(filename: str, expected: SnapshotInfo) -> None:
    info = parse_snapshot_xml((DATA / filename).read_text(), domain="vm1")
    assert info == expected
    assert info.has_memory is (expected.memory != "no")


def test_missing_memory_element_means_no_memory() -> None:
    info = parse_snapshot_xml("<domainsnapshot><name>s</name></domainsnapshot>", domain="vm1")
    assert info == SnapshotInfo("s", "", 0, "no", None)
    assert not info.has_memory


def test_external_memory_counts_as_memory() -> None:
    xml = "<domainsnapshot><name>s</name><memory snapshot='external' file='/x'/></domainsnapshot>"
    assert parse_snapshot_xml(xml, domain="vm1").has_memory


@pytest.mark.parametrize(
    ("xml", "fragment"),
    [
        ("<domainsnapshot><name>", "unreadable snapshot XML"),
        ("<domain><name>x</name></domain>", "<domain> instead of <domainsnapshot>"),
        ("<domainsnapshot><state>running</state></domainsnapshot>", "has no <name>"),
        ("<domainsnapshot><name>s</name><creationTime>soon</creationTime></domainsnapshot>", "creationTime"),
    ],
)
def test_bad_xml_names_the_domain(xml: str, fragment: str) -> None:
    with pytest.raises(HypervisorError) as info:
        parse_snapshot_xml(xml, domain="vm1")
    assert fragment in str(info.value)
    assert "'vm1'" in str(info.value)
    assert info.value.domain == "vm1"
    assert not info.value.transient
