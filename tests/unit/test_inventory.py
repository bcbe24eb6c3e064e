"""The inventory: every mistake is ONE InputError at its line; paths, ssh merging, vars and --hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.mark import ParameterSet

from orchestrator.app.submit import load_spec
from orchestrator.errors import InputError
from orchestrator.model.inventory import CommandSnapshotConfig, load_inventory
from tests.unit.fakes import GOOD_INVENTORY, GOOD_PLAYBOOK, marked_line, write_inputs

LB = "    loadbalancer: {type: haproxy, socket: /run/haproxy/admin.sock, backend: app}"
HV = '    hypervisor: {type: libvirt, uri: "qemu:///system"}'
SSH = "    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}"
HOSTS = (
    "    hosts:\n"
    "      web1: {address: 10.0.0.11}\n"
    "      web2: {address: 10.0.0.12, domain: web2-vm}\n"
    "      web3: {address: 10.0.0.13, lb_server: srv3}\n"
)
WEB2 = "      web2: {address: 10.0.0.12, domain: web2-vm}"


def edit(old: str, new: str) -> str:
    assert GOOD_INVENTORY.count(old) == 1, old
    return GOOD_INVENTORY.replace(old, new)


def case(name: str, inventory: str, problem: str, fix: str) -> ParameterSet:
    return pytest.param(inventory, problem, fix, id=name)


BAD = [
    case(
        "pool with no hosts",
        edit(HOSTS, "    hosts: {}  # <-\n"),
        "pools.web.hosts: a pool has no hosts",
        "list at least one host under 'hosts'",
    ),
    case(
        "pool with an empty hosts key",
        edit(HOSTS, "    hosts:  # <-\n"),
        "pools.web.hosts: invalid value None",
        "valid dictionary",
    ),
    case(
        "pool without hosts",
        edit(HOSTS, "").replace("  web:\n", "  web:  # <-\n"),
        "pools.web: missing required field 'hosts'",
        "add it",
    ),
    case(
        "haproxy with socket and address",
        edit(LB, LB.replace("backend", "address: '127.0.0.1:9999', backend") + "  # <-"),
        "give exactly one of 'socket' or 'address'",
        "the HAProxy runtime API endpoint",
    ),
    case(
        "haproxy with neither",
        edit(LB, "    loadbalancer: {type: haproxy, backend: app}  # <-"),
        "give exactly one of 'socket' or 'address'",
        "the HAProxy runtime API endpoint",
    ),
    case(
        "haproxy without backend",
        edit(LB, LB.replace(", backend: app", "") + "  # <-"),
        "pools.web.loadbalancer: missing required field 'backend'",
        "add it",
    ),
    case(
        "unknown load balancer",
        edit(LB, LB.replace("haproxy,", "nginx,") + "  # <-"),
        "pools.web.loadbalancer.type: invalid value 'nginx'",
        "'haproxy'",
    ),
    case(
        "unknown hypervisor",
        edit(HV, "    hypervisor: {type: vmware}  # <-"),
        "pools.web.hypervisor: invalid value {'type': 'vmware'}",
        "'libvirt', 'command', 'none'",
    ),
    case(
        "command snapshots without delete",
        edit(HV, "    hypervisor:  # <-\n      type: command\n      create: snap\n      revert: back"),
        "missing required field 'delete'",
        "add it",
    ),
    case(
        "missing ssh key file",
        edit(SSH, SSH.replace("keys/id_ed25519", "keys/id_rsa") + "  # <-"),
        "ssh key file {tmp}/keys/id_rsa does not exist",
        "relative paths count from the inventory's folder",
    ),
    case(
        "missing known_hosts",
        edit(SSH, SSH.replace("keys/known_hosts", "known_hosts") + "  # <-"),
        "ssh known hosts file {tmp}/known_hosts does not exist",
        "create it or fix the path",
    ),
    case(
        "missing host key file",
        edit(WEB2, "      web2:\n        address: 10.0.0.12\n        ssh: {key: /nonexistent/key}  # <-"),
        "ssh key file /nonexistent/key does not exist",
        "create it or fix the path",
    ),
    case(
        "no ssh key at all",
        edit(SSH, SSH.replace(" key: keys/id_ed25519,", "")).replace(
            "web1: {address: 10.0.0.11}", "web1: {address: 10.0.0.11}  # <-"
        ),
        "host web1 has no ssh.key",
        "set ssh.key on the pool or the host",
    ),
    case(
        "host without address",
        edit(WEB2, "      web2: {domain: web2-vm}  # <-"),
        "pools.web.hosts.web2: missing required field 'address'",
        "add it",
    ),
    case(
        "typo in a host",
        edit(WEB2, WEB2.replace("domain", "domian") + "  # <-"),
        "unknown field 'domian'",
        "check its spelling",
    ),
    case(
        "bad host name",
        edit(WEB2, WEB2.replace("web2:", "'web 2':") + "  # <-"),
        "invalid value 'web 2'",
        "should match pattern",
    ),
    case(
        "ssh port out of range",
        edit(SSH, SSH.replace("user: root,", "user: root, port: 70000,") + "  # <-"),
        "pools.web.ssh.port: invalid value 70000",
        "less than or equal to 65535",
    ),
    case(
        "bad duration",
        edit(LB, LB.replace("backend: app", "backend: app, timeout: soon") + "  # <-"),
        "pools.web.loadbalancer.timeout: 'soon' is not a duration",
        "'30s'",
    ),
    case("no pools", "vars: {env: test}  # <-\n", "missing required field 'pools'", "add it"),
    case(
        "duplicate host",
        edit(WEB2, WEB2 + "\n      web2: {address: 10.0.0.99}  # <-"),
        "duplicate key 'web2'",
        "each key once",
    ),
]


@pytest.mark.parametrize(("inventory", "problem", "fix"), BAD)
def test_a_bad_inventory_gives_one_error_at_its_line(
    tmp_path: Path, inventory: str, problem: str, fix: str
) -> None:
    book, inv = write_inputs(tmp_path, inventory=inventory)
    with pytest.raises(InputError) as raised:
        load_spec(book, inv)
    error = raised.value
    assert str(error).startswith(f"{inv}:{marked_line(inventory)}: "), str(error)
    assert problem.replace("{tmp}", str(tmp_path)) in error.problem, str(error)
    assert fix in error.expected, str(error)
    assert "\n" not in str(error)


def test_unknown_host_in_hosts_option(tmp_path: Path) -> None:
    book, inv = write_inputs(tmp_path)
    with pytest.raises(InputError) as raised:
        load_spec(book, inv, hosts=("web1", "web9"))
    # a command-line argument has no file line: the error names the option instead
    assert str(raised.value) == "--hosts: host 'web9' is not in pool 'web'; one of: web1, web2, web3"


def test_hosts_option_keeps_pool_order(tmp_path: Path) -> None:
    book, inv = write_inputs(tmp_path)
    spec = load_spec(book, inv, hosts=("web3", "web1"))
    assert list(spec.hosts) == ["web1", "web3"]
    assert spec.batches == [["web1"], ["web3"]]


def test_relative_paths_count_from_the_inventory_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "site"
    book, inv = write_inputs(
        folder, inventory=edit(LB, LB.replace("/run/haproxy/admin.sock", "run/admin.sock"))
    )
    monkeypatch.chdir(tmp_path)  # not the inventory's folder
    spec = load_spec(book.relative_to(tmp_path), inv.relative_to(tmp_path))
    ssh = spec.hosts["web1"].ssh
    assert ssh.key_file == folder / "keys" / "id_ed25519"
    assert ssh.known_hosts == folder / "keys" / "known_hosts"
    assert spec.loadbalancer.socket == folder / "run" / "admin.sock"
    assert spec.hosts["web1"].steps[0].src == folder / "app-2.tar.gz"


def test_ssh_defaults_and_host_overrides_field_by_field(tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    other.write_text("placeholder")
    inventory = edit(
        WEB2, f"      web2: {{address: 10.0.0.12, ssh: {{port: 2222, key: {other}, connect_timeout: 3s}}}}"
    )
    book, inv = write_inputs(tmp_path, inventory=inventory)
    spec = load_spec(book, inv)
    web1, web2 = spec.hosts["web1"].ssh, spec.hosts["web2"].ssh
    assert (web1.user, web1.port, web1.connect_timeout) == ("root", 22, 10.0)  # defaults
    assert web1.key_file == tmp_path / "keys" / "id_ed25519"
    assert (web2.user, web2.port, web2.key_file, web2.connect_timeout) == ("root", 2222, other, 3.0)
    assert web2.known_hosts == tmp_path / "keys" / "known_hosts"  # from the pool
    assert web2.address == "10.0.0.12"


def test_domain_and_lb_server_default_to_the_host_name(tmp_path: Path) -> None:
    spec = load_spec(*write_inputs(tmp_path))
    assert [(h.name, h.domain, h.lb_server) for h in spec.hosts.values()] == [
        ("web1", "web1", "web1"),
        ("web2", "web2-vm", "web2"),
        ("web3", "web3", "srv3"),
    ]


def test_vars_precedence_inventory_pool_host_playbook(tmp_path: Path) -> None:
    inventory = (
        edit("vars: {env: test}", "vars: {a: inv, b: inv, c: inv, d: inv}")
        .replace(
            "vars: {app_dir: /opt/app, app_port: 8080}",
            "vars: {app_dir: /opt/app, app_port: 8080, b: pool, c: pool, d: pool}",
        )
        .replace("web1: {address: 10.0.0.11}", "web1: {address: 10.0.0.11, vars: {c: host, d: host}}")
    )
    playbook = GOOD_PLAYBOOK.replace('vars: {version: "2"}', "vars: {d: book}").replace(
        "/bin/install /tmp/app-2.tar.gz", "/bin/install {{ vars.a }} {{ vars.b }} {{ vars.c }} {{ vars.d }}"
    )
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook, inventory=inventory))
    assert spec.hosts["web1"].steps[1].command == "/opt/app/bin/install inv pool host book"
    assert spec.hosts["web2"].steps[1].command == "/opt/app/bin/install inv pool pool book"


def test_command_snapshots_are_rendered_per_host_and_quoted(tmp_path: Path) -> None:
    inventory = edit(
        HV,
        "    hypervisor:\n"
        "      type: command\n"
        "      create: 'zfs snapshot tank/{{ host.name }}@{{ snapshot }}'\n"
        "      revert: 'zfs rollback -r tank/{{ host.name }}@{{ snapshot }}'\n"
        "      delete: 'zfs destroy tank/{{ host.name }}@{{ snapshot }}'\n"
        "      timeout: 5m",
    )
    playbook = GOOD_PLAYBOOK.replace(
        "retention:", "name: 'pre-{{ vars.version }}-{{ host.name }}', retention:"
    )
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook, inventory=inventory), rollout_id="R1")
    assert isinstance(spec.hypervisor, CommandSnapshotConfig)
    assert spec.snapshot_timeout == 300.0
    # Rendered per host: a name using host.* differs from host to host.
    assert [h.snapshot_name for h in spec.hosts.values()] == ["pre-2-web1", "pre-2-web2", "pre-2-web3"]
    assert spec.hosts["web3"].snapshot_commands == {
        "create": "zfs snapshot tank/web3@pre-2-web3",
        "revert": "zfs rollback -r tank/web3@pre-2-web3",
        "delete": "zfs destroy tank/web3@pre-2-web3",
    }


def test_undefined_name_in_a_snapshot_command_points_at_the_inventory(tmp_path: Path) -> None:
    inventory = edit(
        HV,
        "    hypervisor:\n      type: command\n      create: 'lvcreate -s {{ vars.vg }}'  # <-\n"
        "      revert: x\n      delete: y",
    )
    book, inv = write_inputs(tmp_path, inventory=inventory)
    with pytest.raises(
        InputError, match=rf"^{inv}:{marked_line(inventory)}: template 'lvcreate -s {{{{ vars.vg }}}}'"
    ):
        load_spec(book, inv)


def test_no_snapshots_type_disables_snapshots(tmp_path: Path) -> None:
    spec = load_spec(*write_inputs(tmp_path, inventory=edit(HV, "    hypervisor: {type: none}")))
    assert spec.snapshot_enabled is False


def test_haproxy_over_tcp(tmp_path: Path) -> None:
    inventory = edit(LB, "    loadbalancer: {address: '127.0.0.1:9999', backend: app, timeout: 2s}")
    spec = load_spec(*write_inputs(tmp_path, inventory=inventory))
    assert (spec.loadbalancer.socket, spec.loadbalancer.address) == (None, "127.0.0.1:9999")
    assert spec.loadbalancer.timeout == 2.0


def test_every_pool_is_validated_even_if_unused(tmp_path: Path) -> None:
    inventory = (
        GOOD_INVENTORY + "  db:\n    loadbalancer: {backend: db}  # <-\n    hosts: {db1: {address: x}}\n"
    )
    book, inv = write_inputs(tmp_path, inventory=inventory)
    with pytest.raises(
        InputError, match=rf"^{inv}:{marked_line(inventory)}: pools.db.loadbalancer: give exactly"
    ):
        load_spec(book, inv)


def test_load_inventory_alone(tmp_path: Path) -> None:
    _, inv = write_inputs(tmp_path)
    inventory, lines = load_inventory(inv)
    assert list(inventory.pools["web"].hosts) == ["web1", "web2", "web3"]
    assert inventory.vars == {"env": "test"}
    assert lines.line(("pools", "web", "hosts", "web3")) == 11
