"""resolve: what `validate` checks beyond the schema, so that nothing is found only after a server was
drained. Each bad case names the line carrying `# <-`."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.app.submit import load_spec
from orchestrator.errors import InputError
from orchestrator.model.secrets import token
from orchestrator.report import plan_text
from tests.unit.fakes import GOOD_INVENTORY, GOOD_PLAYBOOK, marked_line, write_inputs

HTTP = '  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health", json: {version: "2"}}'
SECRETS = "secrets: {pw: {env: APP_PW}, token: {file: /run/secrets/token}}\n"


def check(line: str) -> str:
    assert GOOD_PLAYBOOK.count(HTTP) == 1
    return GOOD_PLAYBOOK.replace(HTTP, line) + SECRETS


def bad(
    tmp_path: Path, problem: str, *, playbook: str = GOOD_PLAYBOOK, inventory: str = GOOD_INVENTORY
) -> None:
    book, inv = write_inputs(tmp_path, playbook=playbook, inventory=inventory)
    marked = book if "# <-" in playbook else inv
    with pytest.raises(InputError) as raised:
        load_spec(book, inv)
    text = playbook if marked == book else inventory
    assert str(raised.value).startswith(f"{marked}:{marked_line(text)}: "), str(raised.value)
    assert problem in str(raised.value), str(raised.value)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('  - http: {url: "{{ host.address }}:8080/health"}  # <-', "does not start with http://"),
        ('  - http: {url: "ftp://{{ host.address }}/health"}  # <-', "does not start with http://"),
        ('  - http: {url: "http://{{ host.address }}:99999/"}  # <-', "port that is not a number"),
        ('  - http: {url: "http://{{ host.address }}:abc/"}  # <-', "port that is not a number"),
        ('  - http: {url: "http://{{ host.address }}:/x"}  # <-', "empty or zero port"),
        ('  - http: {url: "http:///health"}  # <-', "has no host"),
        ('  - http: {url: "http://a b/health"}  # <-', "whitespace"),
        ('  - http: {url: "http://{{ secrets.pw }}/health"}  # <-', "secret in its host"),
        ('  - http: {url: "http://x/#frag"}  # <-', "fragment"),
        ('  - http: {url: "http://bad_host!/"}  # <-', "not an IP address or a host name"),
        (
            '  - http: {url: "http://u:{{ secrets.pw }}@x/", headers: {Authorization: "Basic x"}}  # <-',
            "also sends an Authorization header",
        ),
        ('  - http: {url: "http://x/", contains: "{{ vars.nope }}"}  # <-', "undefined name"),
        ('  - http: {url: "http://x/", json: {version: "{{ 1/0 }}"}}  # <-', "ZeroDivisionError"),
        ('  - http: {url: "http://x/", contains: "{{ secrets.pw }}"}  # <-', "where secrets may not go"),
        ('  - http: {url: "http://x/", headers: {"Bad Name": "v"}}  # <-', "headers"),
        ('  - tcp: {port: 22, address: "no such host!"}  # <-', "not an IP address or a host name"),
        ('  - tcp: {port: 22, address: "{{ secrets.pw }}"}  # <-', "where secrets may not go"),
        ('  - command: {run: "{{ vars.empty | raw }}"}  # <-', "renders to nothing"),
    ],
)
def test_check_arguments_are_checked_at_validate(tmp_path: Path, line: str, problem: str) -> None:
    bad(
        tmp_path,
        problem,
        playbook=check(line).replace('vars: {version: "2"}', 'vars: {version: "2", empty: " "}'),
    )


def test_a_header_value_with_a_line_break_is_refused(tmp_path: Path) -> None:
    playbook = check('  - http: {url: "http://x/", headers: {X-A: "{{ vars.two }}"}}  # <-').replace(
        'vars: {version: "2"}', 'vars: {version: "2", two: "a\\nb"}'
    )
    bad(tmp_path, "holds a line break", playbook=playbook)


def test_secrets_go_into_urls_headers_and_commands_as_tokens(tmp_path: Path) -> None:
    playbook = check(
        '  - http: {url: "http://mon:{{ secrets.pw }}@{{ host.address }}/h?t={{ secrets.token }}",'
        ' headers: {X-Token: "{{ secrets.token }}"}}'
    ).replace("/bin/install /tmp/app-2.tar.gz", "/bin/install --pw {{ secrets.pw }} /tmp/app-2.tar.gz")
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook))
    host = spec.hosts["web1"]
    assert host.steps[1].command == f"/opt/app/bin/install --pw {token('pw')} /tmp/app-2.tar.gz"
    (http,) = [c for c in host.checks if c.kind == "http"]
    assert http.url == f"http://mon:{token('pw')}@10.0.0.11/h?t={token('token')}"
    assert http.headers == {"X-Token": token("token")}
    assert set(spec.secrets) == {"pw", "token"}
    assert spec.secrets["pw"].where == f"{tmp_path / 'playbook.yaml'}:{playbook.count(chr(10))}"
    shown = plan_text(spec)
    assert "--pw ***" in shown and "X-Token: ***" in shown and "\x1f" not in shown
    assert "pw: environment variable APP_PW" in shown


def test_inventory_and_pool_secrets_are_declared_where_they_are_written(tmp_path: Path) -> None:
    inventory = GOOD_INVENTORY.replace(
        "vars: {env: test}", "vars: {env: test}\nsecrets: {a: {env: A_PW}}"
    ).replace(
        "    vars: {app_dir: /opt/app, app_port: 8080}",
        "    vars: {app_dir: /opt/app, app_port: 8080}\n    secrets: {b: {file: keys/b}}",
    )
    playbook = GOOD_PLAYBOOK.replace(
        "/bin/install /tmp/app-2.tar.gz", "/bin/install {{ secrets.a }} {{ secrets.b }}"
    )
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook, inventory=inventory))
    assert spec.secrets["a"].where == f"{tmp_path / 'inventory.yaml'}:2"
    assert spec.secrets["b"].source.file == tmp_path / "keys" / "b"  # relative to the inventory


LB = "    loadbalancer: {type: haproxy, socket: /run/haproxy/admin.sock, backend: app}"
SSH = "    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}"
WEB1 = "      web1: {address: 10.0.0.11}"
WEB3 = "      web3: {address: 10.0.0.13, lb_server: srv3}"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (WEB3, "      web3: {address: 10.0.0.13, lb_server: web1}  # <-", "also host web1's"),
        (WEB3, "      web3: {address: 10.0.0.13, domain: web2-vm}  # <-", "also host web2's"),
        (LB, LB.replace("backend: app", "backend: 'app;shutdown sessions'") + "  # <-", "backend"),
        (
            LB,
            LB.replace("backend: app", 'backend: "app\\nset server app/web1 state maint"') + "  # <-",
            "backend",
        ),
        (WEB1, "      web1: {address: 10.0.0.11, lb_server: 'a b'}  # <-", "lb_server"),
        (WEB1, "      web1: {address: 10.0.0.11, domain: 'vm;1'}  # <-", "domain"),
        (WEB1, "      web1: {address: '10.0.0.11; id'}  # <-", "not an IP address"),
        (SSH, SSH.replace("user: root", "user: ''") + "  # <-", "user"),
        (
            LB,
            LB.replace("socket: /run/haproxy/admin.sock", "address: '10.0.0.5'") + "  # <-",
            "not host:port",
        ),
    ],
)
def test_names_and_addresses_that_could_become_commands_are_refused(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    assert GOOD_INVENTORY.count(old) == 1, old
    bad(tmp_path, problem, inventory=GOOD_INVENTORY.replace(old, new))


def test_a_window_shorter_than_a_host_needs_is_refused_with_both_numbers(tmp_path: Path) -> None:
    playbook = GOOD_PLAYBOOK + 'window: {timezone: Europe/Paris, allowed: ["Sat 01:00-01:02"]}  # <-\n'
    bad(tmp_path, "longest opening is 2 min, but a host is expected to need up to 8 min", playbook=playbook)
    playbook = GOOD_PLAYBOOK + 'window: {timezone: Europe/Paris, allowed: ["Sat 01:00-05:00"]}\n'
    assert load_spec(*write_inputs(tmp_path, playbook=playbook)).window is not None


STRATEGY = 'strategy: {batches: [1, "50%"], on_failure: halt}'
SNAPSHOT = "snapshot: {enabled: true, retention: delete_on_success}"
UPLOAD = '  - upload: {src: app-2.tar.gz, dest: /tmp/app-2.tar.gz, mode: "0644"}'
STABILIZE = "stabilize: {interval: 1s, successes: 3, timeout: 30s}"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("drain: {timeout: 30s}", "drain: {timeout: 0}  # <-", "above 0"),
        ("drain: {timeout: 30s}", "drain: {timeout: .inf}  # <-", "timeout"),
        ("drain: {timeout: 30s}", "drain: {timeout: 30s}\ndeadlines: {host: 0}  # <-", "above 0"),
        ("drain: {timeout: 30s}", "drain: {timeout: 30s}\ndeadlines: {rollout: 0}  # <-", "above 0"),
        (STRATEGY, "strategy: {batches: [true]}  # <-", "batch size"),
        (STRATEGY, "strategy: {batches: [1.5]}  # <-", "batch size"),
        (STRATEGY, "strategy: {max_unavailable: 0}  # <-", "max_unavailable 0"),
        (STRATEGY, 'strategy: {max_unavailable: "0%"}  # <-', "max_unavailable"),
        (STABILIZE, "stabilize: {interval: 1s, successes: true, timeout: 30s}  # <-", "successes"),
        (SNAPSHOT, 'snapshot: {enabled: "yes"}  # <-', "enabled"),
        (SNAPSHOT, "snapshot: {name: 'a b'}  # <-", "snapshot name"),
        ("  - tcp: {port: 22}", "  - tcp: {port: true}  # <-", "port"),
        (UPLOAD, "  - upload: {src: app-2.tar.gz, dest: ''}  # <-", "dest"),
        (UPLOAD, "  - upload: {src: app-2.tar.gz, dest: '{{ vars.blank }}'}  # <-", "renders to nothing"),
    ],
)
def test_values_that_would_be_reinterpreted_are_refused(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    assert GOOD_PLAYBOOK.count(old) == 1, old
    playbook = GOOD_PLAYBOOK.replace(old, new).replace(
        'vars: {version: "2"}', 'vars: {version: "2", blank: ""}'
    )
    bad(tmp_path, problem, playbook=playbook)


def test_plan_works_without_the_upload_artifacts_and_lists_them(tmp_path: Path) -> None:
    book, inv = write_inputs(tmp_path)
    (tmp_path / "app-2.tar.gz").unlink()
    with pytest.raises(InputError, match=r"upload source .* does not exist"):
        load_spec(book, inv)
    missing: list[str] = []
    spec = load_spec(book, inv, missing=missing)
    assert missing == [str(tmp_path / "app-2.tar.gz")]
    assert f"Missing upload sources (validate and run refuse until they exist):\n  {missing[0]}" in plan_text(
        spec, missing
    )


def test_plan_shows_every_command_in_full_with_control_characters_escaped(tmp_path: Path) -> None:
    long_command = "/opt/app/bin/install " + " ".join(f"--opt{i}=v" for i in range(30))
    playbook = (
        GOOD_PLAYBOOK.replace('"{{ vars.app_dir }}/bin/install /tmp/app-2.tar.gz"', f'"{long_command}"')
        .replace(
            "drain: {timeout: 30s}",
            'drain: {timeout: 30s, sessions: {probe: "count-sessions", warn: "notify-users {{ vars.msg }}"}}',
        )
        .replace('vars: {version: "2"}', 'vars: {version: "2", msg: "save\\ttab"}')
    )
    spec = load_spec(*write_inputs(tmp_path, playbook=playbook))
    text = plan_text(spec)
    assert long_command in text
    assert "user sessions probe: count-sessions" in text
    assert "user sessions warning: notify-users 'save\\x09tab'" in text  # the tab shown, not printed
    assert "after a revert, check: http http://10.0.0.11:8080/health" in text
