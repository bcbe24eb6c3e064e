"""Every playbook shipped under playbooks/ validates against an inventory it is written for.

- playbooks/examples/*: against playbooks/examples/inventory.yaml, as shipped (its key files are
  placeholders next to it); the playbook is copied to a temporary folder so that its release
  artifacts, which are not in the repository, can be created beside it.
- loopback-*.yaml: against the inventory the loopback farm writes (orchestrator.lab.loopback).
- lab-*.yaml: against the inventory ``orchestrator lab up`` writes (orchestrator.lab.lab).
Upload sources that render to the temporary folder are created there; any other must exist in the
repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.app.submit import load_spec
from orchestrator.lab import lab
from orchestrator.lab.haproxy import HAProxyProcess
from orchestrator.lab.loopback import LoopbackFarm
from orchestrator.model import playbook as pb
from orchestrator.model.inventory import CommandSnapshotConfig, load_inventory
from orchestrator.model.playbook import load_playbook
from orchestrator.model.secrets import token
from orchestrator.model.templating import render
from orchestrator.report import plan_text

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
EXAMPLES = PLAYBOOKS / "examples"
EXAMPLES_INVENTORY = EXAMPLES / "inventory.yaml"
ALL = sorted(p for p in PLAYBOOKS.rglob("*.yaml") if not p.name.startswith("inventory"))


def _keys(key: Path, known_hosts: Path) -> None:
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("placeholder\n")
    known_hosts.write_text("# placeholder\n")


def _loopback_inventory(tmp: Path) -> Path:
    farm = LoopbackFarm(tmp / "farm")  # only its description: nothing is started
    _keys(farm.key, farm.known_hosts)
    farm.inventory.parent.mkdir(parents=True, exist_ok=True)
    farm.inventory.write_text(yaml.safe_dump(farm.inventory_data(), sort_keys=False))
    return farm.inventory


def _lab_inventory(tmp: Path) -> Path:
    root = tmp / "lab"
    paths = lab._paths(root)
    _keys(paths["key"], paths["known_hosts"])
    specs = lab._specs(root, 3, root / "image" / "vmlinuz")
    proxy = HAProxyProcess(paths["haproxy"], frontend=lab.FRONTEND, backend=lab.BACKEND, servers=[])
    lab._write_inventory(paths, specs, proxy, "qemu+unix:///system?socket=" + str(root / "libvirt-sock"))
    return paths["inventory"]


def inputs_for(playbook: Path, tmp: Path) -> tuple[Path, Path]:
    """(the playbook to validate, its inventory)."""
    rel = playbook.relative_to(PLAYBOOKS)
    if rel.parts[0] == "examples":
        copy = tmp / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(playbook, copy)
        return copy, EXAMPLES_INVENTORY
    if playbook.name.startswith("loopback-"):
        return playbook, _loopback_inventory(tmp)
    if playbook.name.startswith("lab-"):
        return playbook, _lab_inventory(tmp)
    raise AssertionError(
        f"playbooks/{rel}: no inventory known for it; teach {Path(__file__).name} which fits"
    )


def create_upload_sources(playbook: Path, inventory: Path, tmp: Path) -> None:
    book, _ = load_playbook(playbook)
    inv, _ = load_inventory(inventory)
    pool = inv.pools[book.pool]
    for name, host in pool.hosts.items():
        context = {
            "vars": {**inv.vars, **pool.vars, **host.vars, **book.vars},
            "host": {"name": name, "address": host.address},
        }
        for step in book.update:
            if isinstance(step, pb.UploadStep):
                src = Path(render(str(step.upload.src), context, where=str(playbook), shell=False))
                src = src if src.is_absolute() else playbook.parent / src
                if src.is_relative_to(tmp) and not src.exists():
                    src.parent.mkdir(parents=True, exist_ok=True)
                    src.write_bytes(b"placeholder artifact")


def test_there_are_playbooks_of_every_kind() -> None:
    names = [p.name for p in ALL]
    assert any(p.parent == EXAMPLES for p in ALL)
    assert any(n.startswith("loopback-") for n in names)
    assert any(n.startswith("lab-") for n in names)


@pytest.mark.parametrize("playbook", ALL, ids=[str(p.relative_to(PLAYBOOKS)) for p in ALL])
def test_playbook_validates(playbook: Path, tmp_path: Path) -> None:
    book, inventory = inputs_for(playbook, tmp_path)
    create_upload_sources(book, inventory, tmp_path)
    spec = load_spec(book, inventory, rollout_id="R1")
    assert spec.hosts and spec.batches
    assert sorted(spec.host_order()) == sorted(spec.hosts)
    for host in spec.hosts.values():
        assert host.steps and host.checks and host.revert_checks
        assert all(s.src is None or s.src.is_file() for s in host.steps)
        # the old version must not be held to what pins the new one
        pinned = [c.json_fields for c in host.checks if c.json_fields]
        assert not any(c.json_fields in pinned for c in host.revert_checks if c.json_fields)
    assert spec.name in plan_text(spec)


def test_the_dxcare_example(tmp_path: Path) -> None:
    book, inventory = inputs_for(EXAMPLES / "dxcare-2026.12.yaml", tmp_path)
    create_upload_sources(book, inventory, tmp_path)
    spec = load_spec(book, inventory, rollout_id="R1")
    assert spec.pool == "dxcare-app"
    assert spec.batches == [["dxapp01"], ["dxapp02", "dxapp03"], ["dxapp04", "dxapp05", "dxapp06"]]
    assert (spec.drain_timeout, spec.snapshot_memory, spec.snapshot_retention) == (900.0, True, "keep")
    assert {h.snapshot_name for h in spec.hosts.values()} == {"pre-dxcare-2026.12-R1"}
    host = spec.hosts["dxapp04"]
    assert (host.domain, host.lb_server, host.address) == ("vm-dxapp04", "dxapp04", "10.40.2.14")
    assert host.ssh.key_file == EXAMPLES / "keys" / "id_ed25519"
    assert host.ssh.known_hosts == EXAMPLES / "keys" / "known_hosts"
    commands = [s.command for s in host.steps if s.kind == "run"]
    install = (
        "/opt/dxcare/bin/install --archive /var/tmp/dxcare-2026.12.tar.gz --site chu-nord --db-password "
    )
    assert install + token("dxcare_db_password") in commands
    assert spec.secrets["dxcare_db_password"].source.env == "DXCARE_DB_PASSWORD"
    assert host.checks[0].url == "http://10.40.2.14:8080/health"
    assert host.checks[0].json_fields == {"version": "2026.12"}


def test_the_example_inventory_command_snapshot_pool(tmp_path: Path) -> None:
    """The report servers are physical: their snapshots are ZFS commands run over SSH."""
    text = (EXAMPLES / "dxcare-2026.12.yaml").read_text().replace("pool: dxcare-app", "pool: dxcare-reports")
    book = tmp_path / "examples" / "reports.yaml"
    book.parent.mkdir(parents=True)
    book.write_text(text)
    create_upload_sources(book, EXAMPLES_INVENTORY, tmp_path)
    spec = load_spec(book, EXAMPLES_INVENTORY, rollout_id="R1")
    assert isinstance(spec.hypervisor, CommandSnapshotConfig)
    assert spec.snapshot_timeout == 300.0
    rep2 = spec.hosts["dxrep02"]
    assert rep2.ssh.port == 2222
    assert rep2.snapshot_commands["create"] == "zfs snapshot tank/dxcare@pre-dxcare-2026.12-R1"
    assert rep2.snapshot_commands["revert"] == (
        "systemctl stop dxcare-reports && zfs rollback -r tank/dxcare@pre-dxcare-2026.12-R1"
        " && systemctl start dxcare-reports"
    )


def _readme_block(heading: str) -> str:
    text = (PLAYBOOKS.parent / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    return section.split("```yaml\n", 1)[1].split("\n```", 1)[0] + "\n"


def test_the_readme_inventory_and_playbook_validate_together(tmp_path: Path) -> None:
    """The README's own examples are what a new user copies first: they must pass `validate`."""
    inventory, playbook = tmp_path / "inventory.yaml", tmp_path / "app-v2.yaml"
    inventory.write_text(_readme_block("### Inventory"))
    playbook.write_text(_readme_block("### Playbook"))
    _keys(tmp_path / "keys" / "id_ed25519", tmp_path / "keys" / "known_hosts")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "app-2.tar.gz").write_bytes(b"placeholder")
    spec = load_spec(playbook, inventory)
    assert (
        len(spec.hosts) == 4
        and spec.window is not None
        and set(spec.secrets) == {"db_password", "health_token"}
    )
    assert "***" in plan_text(spec)
