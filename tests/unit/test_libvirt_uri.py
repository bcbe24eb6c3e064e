"""check_uri and connection_uri: one table of URIs the orchestrator opens, one of URIs it refuses (each
with the words its message must carry), and the URI handed to libvirt for the SSH transports."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from orchestrator.adapters.hypervisors.libvirt import LibvirtSnapshots
from orchestrator.app.submit import load_spec
from orchestrator.engine.secrets import SecretValues
from orchestrator.engine.wiring import Runtime
from orchestrator.errors import InputError
from orchestrator.model.inventory import LibvirtConfig
from orchestrator.model.libvirt_uri import check_uri, connection_uri, transport
from tests.unit.fakes import GOOD_INVENTORY, marked_line, rollout_spec, write_inputs

GOOD = [
    # What the project itself writes: the lab's own libvirtd socket, the test driver in tests.
    ("qemu+unix:///system?socket=/var/lib/orchestrator-lab/libvirt/run/libvirt-sock", "unix"),
    ("test:///default", "local"),
    ("test:///tmp/pytest-of-root/pytest-3/test_x0/node.xml", "local"),
    ("test+unix:///default", "unix"),
    ("qemu:///system", "unix"),
    ("qemu:///session", "unix"),
    ("qemu:///system?socket=/run/libvirt/libvirt-sock&mode=legacy", "unix"),
    ("qemu+unix:///system?mode=direct", "unix"),
    ("test+unix:///default?socket=/tmp/lab/libvirt-sock", "unix"),
    ("qemu://hv1.example.com/system", "tls"),
    ("qemu+tls://hv1.example.com:16514/system", "tls"),
    ("qemu+tls://10.0.0.5/system?pkipath=/etc/pki/libvirt-client", "tls"),
    ("qemu+tls://hv1/system?tls_priority=NORMAL:-VERS-TLS1.0", "tls"),
    ("qemu+tls://hv1/system?tls_priority=NORMAL:%2BVERS-TLS1.3", "tls"),
    ("qemu+libssh2://root@hv1/system", "libssh2"),
    ("qemu+libssh2://hv1/system", "libssh2"),
    ("qemu+libssh2://deploy@hv1.example.com:2222/system", "libssh2"),
    ("qemu+libssh2://root@127.88.0.1:2300/system?proxy=native&sshauth=privkey", "libssh2"),
    ("qemu+libssh2://root@hv1/system?sshauth=agent,privkey&no_tty=1", "libssh2"),
    ("qemu+libssh2://root@hv1/system?known_hosts_verify=normal", "libssh2"),
    ("qemu+libssh2://root@hv1/system?socket=/run/libvirt/libvirt-sock&mode=auto&proxy=netcat", "libssh2"),
    ("qemu+libssh://root@hv1/session", "libssh"),
    ("qemu+libssh2://root@[2001:db8::1]:22/system", "libssh2"),
    ("qemu+libssh2://r_o-ot.1@hv-1.example.com/system", "libssh2"),
]


@pytest.mark.parametrize(("uri", "kind"), GOOD, ids=[u for u, _ in GOOD])
def test_accepted_uris_come_back_unchanged(uri: str, kind: str) -> None:
    assert check_uri(uri) == uri
    assert transport(uri) == kind


BAD = [
    # Transports that bypass the inventory's host keys or run commands.
    (
        "qemu+ssh://root@hv1/system",
        "qemu+ssh checks the worker's own ~/.ssh/known_hosts, not the inventory's; "
        "use qemu+libssh2://USER@HOST/system with hypervisor.known_hosts",
    ),
    ("qemu+ext:///system?command=/tmp/x", "transport ext runs a local command"),
    ("qemu+tcp://hv1/system", "transport tcp is unauthenticated and unencrypted; use qemu+tls"),
    ("test+tcp://localhost:5000/default", "transport tcp is unauthenticated"),
    ("xen:///system", "scheme xen is not supported; one of qemu, qemu+unix"),
    ("remote://hv1/", "scheme remote is not supported"),
    ("lxc:///system", "scheme lxc is not supported"),
    ("test+tls://hv1/default", "scheme test+tls is not supported"),
    ("test+libssh2://root@hv1/default", "scheme test+libssh2 is not supported"),
    ("qemu+foo://hv1/system", "scheme qemu+foo is not supported"),
    ("QEMU:///system", "scheme QEMU is not in lower case; write qemu"),
    ("qemu+LIBSSH2://hv1/system", "scheme qemu+LIBSSH2 is not in lower case"),
    # Parameters that skip host-key checks, run or pick commands, or replace the inventory's files.
    (
        "qemu+libssh2://h/system?no_verify=1",
        "uri 'qemu+libssh2://h/system?no_verify=1': parameter no_verify skips the host-key check; remove it",
    ),
    ("qemu+tls://h/system?no_verify=1", "parameter no_verify skips the server certificate check; remove it"),
    ("qemu+unix:///system?no_verify=1", "parameter no_verify skips"),
    ("qemu+tls://h/system?no_sanity=1", "parameter no_sanity skips the sanity checks"),
    ("qemu+libssh2://h/system?command=/tmp/x", "parameter command runs a local command"),
    ("qemu+libssh2://h/system?netcat=/tmp/nc", "parameter netcat picks the command run on the hypervisor"),
    (
        "qemu+libssh2://h/system?known_hosts_verify=ignore",
        "known_hosts_verify=ignore skips the host-key check",
    ),
    (
        "qemu+libssh2://h/system?known_hosts_verify=auto",
        "known_hosts_verify=auto accepts and records unknown",
    ),
    (
        "qemu+libssh2://h/system?known_hosts_verify=strict",
        "known_hosts_verify='strict' is not valid; one of normal",
    ),
    ("qemu+libssh2://h/system?known_hosts=/root/.ssh/known_hosts", "set hypervisor.known_hosts"),
    ("qemu+libssh2://h/system?keyfile=/root/.ssh/id_rsa", "set hypervisor.key instead"),
    ("qemu+libssh2://h/system?name=qemu:///session", "parameter name makes the daemon open another driver"),
    ("qemu+libssh2://h/system?authfile=/root/auth.conf", "parameter authfile reads credentials"),
    ("qemu+tls://h/system?auth=sasl", "parameter auth picks the daemon's authentication scheme"),
    ("qemu+libssh2://h/system?sshauth=password", "sshauth='password' is not valid (a worker has no one"),
    (
        "qemu+libssh2://h/system?sshauth=privkey,keyboard-interactive",
        "a comma-separated list of agent, privkey",
    ),
    ("qemu+libssh2://h/system?foo=1", "parameter foo is unknown (libvirt would pass it on to the daemon)"),
    ("qemu+unix:///system?pkipath=/etc/pki", "parameter pkipath does not apply to the unix transport"),
    ("qemu+tls://h/system?socket=/run/x", "parameter socket does not apply to the tls transport"),
    ("test:///default?socket=/run/x", "the in-process test driver takes no parameters"),
    ("qemu+libssh2://h/system?mode=remote", "mode='remote' is not valid; one of auto, direct, legacy"),
    ("qemu+libssh2://h/system?proxy=ssh", "proxy='ssh' is not valid; one of auto, netcat, native"),
    ("qemu+libssh2://h/system?no_tty=yes", "no_tty='yes' is not valid; one of 0, 1"),
    ("qemu+tls://h/system?tls_priority=NORMAL%3A%24%28id%29", "is not a GnuTLS priority string"),
    # The socket goes unquoted into a shell command on the hypervisor host.
    ("qemu+libssh2://h/system?socket=/x%27%3Bid%3B%27", "is not a plain absolute path"),
    ("qemu+libssh2://h/system?socket=relative/sock", "is not a plain absolute path"),
    ("qemu+libssh2://h/system?socket=/x%24%28id%29", "is not a plain absolute path"),
    # Query syntax libvirt reads differently from a naive parser: measured to bypass the host-key check.
    (
        "qemu+libssh2://h/system?known_hosts_verify=normal;known_hosts_verify=ignore",
        "has ';' in its parameters",
    ),
    (
        "qemu+libssh2://h/system?%6Bnown_hosts_verify=ignore",
        "parameter name '%6Bnown_hosts_verify' is percent-encoded (libvirt reads it as 'known_hosts_verify')",
    ),
    ("qemu+libssh2://h/system?KNOWN_HOSTS_VERIFY=ignore", "is not in lower case (libvirt ignores case)"),
    ("qemu+libssh2://h/system?NO_VERIFY=1", "parameter NO_VERIFY skips the host-key check"),
    ("qemu+libssh2://h/system?sshauth=privkey&sshauth=agent", "parameter sshauth is given twice"),
    ("qemu+libssh2://h/system?mode=auto&MODE=direct", "is not in lower case"),
    ("qemu+tls://h/system?tls_priority=NORMAL:+VERS-TLS1.3", "has a raw '+' in its parameters"),
    ("qemu+libssh2://h/system?socket", "parameter socket has no value; write socket=VALUE"),
    ("qemu+libssh2://h/system?socket=", "parameter socket is empty"),
    ("qemu+libssh2://h/system?=x", "has a parameter with no name"),
    ("qemu+libssh2://h/system?proxy=native&&mode=auto", "has an empty parameter"),
    ("qemu+libssh2://h/system?proxy=native&", "has an empty parameter"),
    ("qemu:///system?", "has an empty query; remove the '?'"),
    ("qemu+libssh2://h/system?socket=/a=b", "socket='/a=b' is not a plain absolute path"),
    ("qemu+libssh2://h/system?socket=/a%ZZ", "has a '%' not followed by two hex digits"),
    ("qemu+libssh2://h/system?socket=/a%20b", "decodes to whitespace or a control character"),
    ("qemu+libssh2://h/system?socket=/a%0Ab", "decodes to whitespace or a control character"),
    ("qemu+libssh2://h/system?socket=/a%FF", "is not valid UTF-8"),
    ("qemu+libssh2://h/system?socket=/a'b", 'character "\'" is not allowed in the parameters'),
    ("qemu+libssh2://h/system?socket=/a$b", "character '$' is not allowed"),
    ("qemu+libssh2://h/system?socket=/a@b", "character '@' is not allowed"),
    # The rest of the URI.
    ("", "uri is empty"),
    ("qemu:///system\n", "contains whitespace or a control character (\\x0a at position 14)"),
    ("qemu:///system ", "contains whitespace or a control character"),
    (" qemu:///system", "contains whitespace"),
    ("qemu+libssh2://h/system?socket=/a\tb", "contains whitespace or a control character (\\x09"),
    ("qemu:///syst\x00em", "\\x00 at position 12"),
    ("qemu+libssh2://hé/system", "contains the non-ASCII character 'é'"),
    ("qemu:///system#frag", "has a fragment ('#'); remove it"),
    ("qemu:system", "is not a libvirt URI"),
    ("/var/run/libvirt/libvirt-sock", "is not a libvirt URI"),
    ("hail", "is not a libvirt URI"),
    ("qemu+libssh2://root:s3cret@hv1/system", "uri 'qemu+libssh2://root:***@hv1/system': carries a password"),
    ("qemu+libssh2://-oProxyCommand=x@hv1/system", "user name '-oProxyCommand=x' is not valid"),
    ("qemu+libssh2://a@b@hv1/system", "user name 'a@b' is not valid"),
    ("qemu+tls://root@hv1/system", "a user name means nothing to the tls transport; remove 'root@'"),
    ("qemu+unix://hv1/system", "the unix transport reaches the local daemon, not host 'hv1'"),
    ("qemu+unix://root@/system", "a user name means nothing to the unix transport"),
    ("test://hv1/default", "the test driver is reached only on this machine"),
    ("qemu+libssh2:///system", "the libssh2 transport needs a host; qemu+libssh2://USER@HOST/system"),
    ("qemu+tls:///system", "the tls transport needs a host; qemu+tls://HOST/system"),
    ("qemu+libssh2://hv_1/system", "host 'hv_1' is not a valid host name or address"),
    ("qemu+libssh2://hv1%2eexample/system", "host 'hv1%2eexample' is not a valid host name"),
    ("qemu+libssh2://[::g]/system", "is not a valid [IPv6] address"),
    ("qemu+libssh2://[::1]x/system", "is not a valid [IPv6] address"),
    ("qemu+libssh2://hv1:0/system", "port '0' is not valid; a number from 1 to 65535"),
    ("qemu+libssh2://hv1:65536/system", "port '65536' is not valid"),
    ("qemu+libssh2://hv1:22a/system", "port '22a' is not valid"),
    ("qemu+libssh2://hv1:/system", "port '' is not valid"),
    ("qemu+libssh2://hv1", "path '' is not valid for the qemu driver; /system or /session"),
    ("qemu:///embed", "path '/embed' is not valid for the qemu driver"),
    ("qemu:///system/", "path '/system/' is not valid"),
    ("test:///", "path '/' is not valid for the test driver; /default or the absolute path"),
    ("test:///a%20b.xml", "path '/a%20b.xml' is not valid for the test driver"),
    ("test:///a;b.xml", "path '/a;b.xml' is not valid for the test driver"),
    ("qemu:///system?socket=/x" + "y" * 2100, "characters long; at most 2048"),
]


@pytest.mark.parametrize(("uri", "message"), BAD, ids=[repr(u)[:80] for u, _ in BAD])
def test_refused_uris_say_what_is_wrong_and_what_to_do(uri: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_uri(uri)
    text = str(raised.value)
    assert message in text
    problem, sep, fix = text.partition("; ")
    assert sep and problem and fix, text  # "what is wrong; what to do", as the inventory's errors split it
    assert "\n" not in text and "s3cret" not in text


def test_the_table_is_big_enough() -> None:
    assert len(GOOD) + len(BAD) >= 40


KNOWN_HOSTS = Path("/etc/orchestrator/config/ssh/known_hosts")
KEY = Path("/etc/orchestrator/ssh-key/id_ed25519")


def query(uri: str) -> list[tuple[str, str]]:
    return [
        (name, unquote(value)) for name, _, value in (s.partition("=") for s in uri.split("?")[1].split("&"))
    ]


def test_ssh_transports_get_the_inventorys_known_hosts_key_and_strict_checking() -> None:
    uri = connection_uri("qemu+libssh2://root@hv1/system?proxy=native", known_hosts=KNOWN_HOSTS, key=KEY)
    assert uri.startswith("qemu+libssh2://root@hv1/system?")
    assert query(uri) == [
        ("proxy", "native"),
        ("known_hosts", str(KNOWN_HOSTS)),
        ("keyfile", str(KEY)),
        ("known_hosts_verify", "normal"),  # last: libvirt uses the last of repeated parameters
    ]
    libssh = connection_uri("qemu+libssh://hv1/system", known_hosts=KNOWN_HOSTS, key=None)
    assert query(libssh) == [("known_hosts", str(KNOWN_HOSTS)), ("known_hosts_verify", "normal")]


def test_paths_are_percent_encoded_and_a_given_known_hosts_verify_is_not_doubled() -> None:
    odd = Path("/srv/farm a/known+hosts&x=1;y%z")
    uri = connection_uri(
        "qemu+libssh2://hv1:2222/system?known_hosts_verify=normal&sshauth=privkey", known_hosts=odd, key=None
    )
    raw = uri.split("?", 1)[1]
    assert " " not in raw and "+" not in raw and ";" not in raw and raw.count("&") == 2
    assert query(uri) == [("sshauth", "privkey"), ("known_hosts", str(odd)), ("known_hosts_verify", "normal")]


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+tls://hv1/system", "test:///default"])
def test_other_transports_are_opened_as_written(uri: str) -> None:
    assert connection_uri(uri, known_hosts=None, key=None) == uri


@pytest.mark.parametrize(
    ("uri", "known_hosts", "key", "message"),
    [
        ("qemu+libssh2://hv1/system", None, KEY, "the libssh2 transport needs a known_hosts file"),
        ("qemu+libssh2://hv1/system", Path("keys/known_hosts"), None, "is a relative path"),
        ("qemu+libssh2://hv1/system", KNOWN_HOSTS, Path("id"), "hypervisor.key 'id' is a relative path"),
        ("qemu:///system", KNOWN_HOSTS, None, "apply only to the libssh and libssh2 transports, not unix"),
        ("qemu+tls://hv1/system", None, KEY, "not tls; remove them"),
        ("qemu+ssh://hv1/system", KNOWN_HOSTS, None, "qemu+ssh checks the worker's own"),
    ],
)
def test_connection_uri_refusals(uri: str, known_hosts: Path | None, key: Path | None, message: str) -> None:
    with pytest.raises(ValueError, match="; ") as raised:
        connection_uri(uri, known_hosts=known_hosts, key=key)
    assert message in str(raised.value)


# In the inventory: the validator, the known_hosts default, relative paths, and what reaches the spec.

HV = '    hypervisor: {type: libvirt, uri: "qemu:///system"}'


def inventory_with(hypervisor: str) -> str:
    assert GOOD_INVENTORY.count(HV) == 1
    return GOOD_INVENTORY.replace(HV, hypervisor)


@pytest.mark.parametrize(
    ("hypervisor", "problem", "fix"),
    [
        (
            '    hypervisor: {type: libvirt, uri: "qemu+ssh://root@hv1/system"}  # <-',
            "uri 'qemu+ssh://root@hv1/system': qemu+ssh checks the worker's own",
            "use qemu+libssh2://USER@HOST/system with hypervisor.known_hosts",
        ),
        (
            '    hypervisor: {type: libvirt, uri: "qemu+libssh2://hv1/system?no_verify=1"}  # <-',
            "parameter no_verify skips the host-key check",
            "remove it",
        ),
        (
            '    hypervisor: {type: libvirt, uri: "qemu:///system", known_hosts: keys/known_hosts}  # <-',
            "hypervisor.known_hosts and hypervisor.key apply only to the libssh and libssh2 transports",
            "remove them",
        ),
    ],
    ids=["qemu+ssh", "no_verify", "known_hosts-on-unix"],
)
def test_the_inventory_refuses_a_bad_hypervisor_at_its_line(
    tmp_path: Path, hypervisor: str, problem: str, fix: str
) -> None:
    inventory = inventory_with(hypervisor)
    book, inv = write_inputs(tmp_path, inventory=inventory)
    with pytest.raises(InputError) as raised:
        load_spec(book, inv)
    error = raised.value
    assert str(error).startswith(f"{inv}:{marked_line(inventory)}: "), str(error)
    assert problem in error.problem and fix in error.expected, str(error)


def test_without_any_known_hosts_an_ssh_hypervisor_is_refused(tmp_path: Path) -> None:
    inventory = inventory_with('    hypervisor: {type: libvirt, uri: "qemu+libssh2://root@hv1/system"}  # <-')
    inventory = inventory.replace(", known_hosts: keys/known_hosts}", "}").replace(
        "{address: 10.0.0.11}", "{address: 10.0.0.11, ssh: {known_hosts: keys/known_hosts}}"
    )
    book, inv = write_inputs(tmp_path, inventory=inventory)
    with pytest.raises(InputError, match=rf"^{inv}:{marked_line(inventory)}: pools.web.hypervisor") as raised:
        load_spec(book, inv)
    assert "the libssh2 transport needs a known_hosts file" in raised.value.problem
    assert "set hypervisor.known_hosts or the pool's ssh.known_hosts" in raised.value.expected


def test_an_ssh_hypervisor_defaults_to_the_pools_known_hosts_and_no_key(tmp_path: Path) -> None:
    inventory = inventory_with('    hypervisor: {type: libvirt, uri: "qemu+libssh2://root@hv1/system"}')
    spec = load_spec(*write_inputs(tmp_path, inventory=inventory))
    assert isinstance(spec.hypervisor, LibvirtConfig)
    assert spec.hypervisor.known_hosts == tmp_path / "keys" / "known_hosts"
    assert spec.hypervisor.key is None
    # What a worker gets back from the stored spec opens the same URI.
    stored = type(spec).model_validate_json(spec.model_dump_json())
    assert stored.hypervisor == spec.hypervisor


def test_hypervisor_paths_count_from_the_inventory_folder(tmp_path: Path) -> None:
    inventory = inventory_with(
        '    hypervisor: {type: libvirt, uri: "qemu+libssh2://root@hv1:2222/system",'
        " known_hosts: keys/hv_known_hosts, key: keys/hv_key}"
    )
    files = write_inputs(tmp_path / "site", inventory=inventory)
    with pytest.raises(InputError, match=r"hypervisor known hosts file .* does not exist"):
        load_spec(*files)
    (tmp_path / "site/keys/hv_known_hosts").write_text("")
    (tmp_path / "site/keys/hv_key").write_text("")
    spec = load_spec(*files)
    hv = spec.hypervisor
    assert isinstance(hv, LibvirtConfig)
    assert (hv.known_hosts, hv.key) == (tmp_path / "site/keys/hv_known_hosts", tmp_path / "site/keys/hv_key")
    assert query(connection_uri(hv.uri, known_hosts=hv.known_hosts, key=hv.key)) == [
        ("known_hosts", str(tmp_path / "site/keys/hv_known_hosts")),
        ("keyfile", str(tmp_path / "site/keys/hv_key")),
        ("known_hosts_verify", "normal"),
    ]


def test_the_lab_inventory_uri_and_the_default_stay_valid() -> None:
    assert LibvirtConfig().uri == "qemu:///system"
    lab = LibvirtConfig(uri="qemu+unix:///system?socket=/var/lib/orchestrator-lab/libvirt/run/libvirt-sock")
    assert connection_uri(lab.uri, known_hosts=None, key=None) == lab.uri


def test_the_worker_opens_the_connection_uri_not_the_raw_one() -> None:
    hypervisor = LibvirtConfig(uri="qemu+libssh2://root@hv1/system", known_hosts=KNOWN_HOSTS, key=KEY)
    spec = rollout_spec(hypervisor=hypervisor)
    runtime = Runtime()
    try:
        # builds the adapter; opens nothing yet
        snapshots = runtime.snapshots(spec, spec.hosts["web1"], SecretValues({}))
        assert isinstance(snapshots, LibvirtSnapshots)
        assert snapshots.uri == connection_uri(hypervisor.uri, known_hosts=KNOWN_HOSTS, key=KEY)
        assert snapshots.uri.endswith("&known_hosts_verify=normal")
    finally:
        runtime.close()
