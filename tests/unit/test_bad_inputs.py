"""Bad and borderline inputs, as an operator types them: each is refused with exactly ONE line on stderr,
exit code 2, naming where the mistake is (FILE:LINE, FILE, an argument or a setting), what is wrong and
what was expected, before any server is contacted. This table is the specification of that behaviour.

Every case is a hospital farm's playbook and inventory (pool ``dxcare-app``, hosts ``dxapp01``...,
backend ``dxcare_app``) with one mistake. The line the error must name carries a trailing ``# <-``
(``marked_line``); a case without a marker gives its location (``--hosts``, ``ORCH_DATABASE_URL``, a
whole file). ``words`` are the few words the line must contain (a tuple inside means any one of them),
kept obvious (the offending field or value) so that the wording can evolve.

One test runs each case through ``orchestrator.cli.main`` in-process (the ``call`` fixture), except
``/dev/zero`` as the playbook, which today reads without end, and so runs as a child process with a memory
limit. A case that hangs is stopped after a few seconds. Failure messages start with the kind of failure
(``traceback``, ``hang``, ``passes``, ``exit code``, ``lines``, ``wrong location``, ``wording``,
``leak``) so that a run lists what is left to do. ``GOOD`` are borderline inputs that must validate.

    .venv/bin/pytest -q tests/unit/test_bad_inputs.py -rf     # what fails, and how
    .venv/bin/pytest -q tests/unit/test_bad_inputs.py -s -k counts
"""

from __future__ import annotations

import enum
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import FrameType

import pytest

from tests.unit.fakes import MARK, marked_line, write_inputs
from tests.unit.test_cli_errors import ORCHESTRATOR, Invoke, call

__all__ = ["call"]  # the fixture, imported so pytest finds it here

EXAMPLES = Path(__file__).resolve().parents[2] / "playbooks" / "examples"
TMP = "@TMP@"  # replaced by the case's folder in file texts, arguments and settings
HANG_AFTER = 5.0  # seconds; every case answers in well under one once implemented


class Kind(enum.IntEnum):
    QUOTING = 1  # shell templates: {{ }} only in an unquoted word; render errors are one line
    NAMES = 2  # pool, host, backend, lb_server, domain, address, socket
    SECRETS = 3  # declarations, where they may go, resolution by `run`, HTTP headers
    YAML = 4  # anchors, aliases, merge keys, size, depth, FIFO, /dev/zero, several documents
    TRACEBACK = 5  # crashes today: tags, complex keys, huge ints, the store's URL, --at, settings
    UNION = 6  # the error comes from the step or check kind written, at the field's own line
    LATE = 7  # mistakes that today show only after a server was drained
    REINTERPRETED = 8  # values quietly read as something else (bools, zero, inf, duplicates)
    LIBVIRT = 9  # the hypervisor URI
    EXAMPLES = 11  # the shipped example with one mistake
    ARGS = 12  # command-line arguments


# The hospital farm every case starts from. It validates today and under the rules tested here. The
# socket is relative (to the inventory's folder) and absent, so a `run` that got past its checks would
# stop at the preflight (exit 3) without contacting anything.

DX_INVENTORY = """\
vars: {site: chu-nord, env: prod}
pools:
  dxcare-app:
    loadbalancer: {type: haproxy, socket: haproxy/admin.sock, backend: dxcare_app}
    hypervisor: {type: libvirt, uri: "qemu:///system"}
    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}
    vars: {app_dir: /opt/dxcare, app_port: 8080, service: dxcare}
    hosts:
      dxapp01: {address: 10.40.2.11, domain: vm-dxapp01}
      dxapp02: {address: 10.40.2.12, domain: vm-dxapp02}
      dxapp03: {address: 10.40.2.13, domain: vm-dxapp03, lb_server: dxapp03}
"""

DX_PLAYBOOK = """\
name: dxcare-2026.12
pool: dxcare-app
strategy: {batches: [1, "50%"], on_failure: halt}
drain: {timeout: 5m}
snapshot: {enabled: true, memory: true, retention: keep}
update:
  - upload: {src: dxcare-2026.12.tar.gz, dest: /var/tmp/dxcare-2026.12.tar.gz, mode: "0640"}
  - run: "{{ vars.app_dir }}/bin/install --archive /var/tmp/dxcare-2026.12.tar.gz --site {{ vars.site }}"
    timeout: 10m
checks:
  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health", json: {version: "2026.12"}}
  - tcp: {port: 8443}
  - command: {run: "systemctl is-active {{ vars.service }}", timeout: 10s}
stabilize: {interval: 2s, successes: 3, timeout: 2m}
vars: {version: "2026.12"}
"""
# One host's expected time in DX_PLAYBOOK: drain 5m + upload 300s (its default) + run 10m + stabilize 2m
# + 60s = 1380s (23 minutes).

INV_VARS = "vars: {site: chu-nord, env: prod}"
INV_LB = "    loadbalancer: {type: haproxy, socket: haproxy/admin.sock, backend: dxcare_app}"
INV_HV = '    hypervisor: {type: libvirt, uri: "qemu:///system"}'
INV_SSH = "    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}"
INV_POOL_VARS = "    vars: {app_dir: /opt/dxcare, app_port: 8080, service: dxcare}"
INV_HOST1 = "      dxapp01: {address: 10.40.2.11, domain: vm-dxapp01}"
INV_HOST2 = "      dxapp02: {address: 10.40.2.12, domain: vm-dxapp02}"
INV_HOST3 = "      dxapp03: {address: 10.40.2.13, domain: vm-dxapp03, lb_server: dxapp03}"
INV_HOSTS = f"    hosts:\n{INV_HOST1}\n{INV_HOST2}\n{INV_HOST3}\n"

PB_POOL = "pool: dxcare-app"
PB_STRATEGY = 'strategy: {batches: [1, "50%"], on_failure: halt}'
PB_DRAIN = "drain: {timeout: 5m}"
PB_SNAPSHOT = "snapshot: {enabled: true, memory: true, retention: keep}"
PB_UPLOAD = '  - upload: {src: dxcare-2026.12.tar.gz, dest: /var/tmp/dxcare-2026.12.tar.gz, mode: "0640"}'
PB_RUN = (
    '  - run: "{{ vars.app_dir }}/bin/install --archive /var/tmp/dxcare-2026.12.tar.gz'
    ' --site {{ vars.site }}"'
)
PB_RUN_TIMEOUT = "    timeout: 10m"
PB_HTTP = (
    '  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health", json: {version: "2026.12"}}'
)
PB_TCP = "  - tcp: {port: 8443}"
PB_CMD = '  - command: {run: "systemctl is-active {{ vars.service }}", timeout: 10s}'
PB_STABILIZE = "stabilize: {interval: 2s, successes: 3, timeout: 2m}"
PB_VARS = 'vars: {version: "2026.12"}'

VALIDATE = ("validate", "playbook.yaml", "-i", "inventory.yaml")
PLAN = ("plan", "playbook.yaml", "-i", "inventory.yaml")
RUN = ("run", "playbook.yaml", "-i", "inventory.yaml")
SCHEDULE = ("schedule", "playbook.yaml", "-i", "inventory.yaml")
LATER = "2099-12-05 01:30"
HOSTILE = "'; rm -rf / #"  # a value that would end the author's quotes and run a command


def edited(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"not exactly once: {old!r}"
    return text.replace(old, new)


def book(old: str, new: str) -> str:
    return edited(DX_PLAYBOOK, old, new)


def inv(old: str, new: str) -> str:
    return edited(DX_INVENTORY, old, new)


def mark(line: str) -> str:
    return f"{line}  {MARK}"


def q(value: str) -> str:
    """``value`` as a YAML double-quoted scalar on one line (JSON strings are YAML)."""
    return json.dumps(value, ensure_ascii=False)


def step(command: str, *, marked: bool = True) -> str:
    """The install step's command replaced by ``command`` (marked unless the mistake is elsewhere)."""
    line = f"  - run: {q(command)}"
    return book(PB_RUN, mark(line) if marked else line)


def check_cmd(command: str) -> str:
    return book(PB_CMD, mark(f"  - command: {{run: {q(command)}, timeout: 10s}}"))


def check_cmd_block(command: str) -> str:
    """A command check in block style: the template's line is not the check's first line."""
    return book(PB_CMD, "  - command:\n      timeout: 10s\n" + mark(f"      run: {q(command)}"))


def http(spec: str) -> str:
    """The http check replaced by ``{spec}`` (YAML flow mapping content), marked."""
    return book(PB_HTTP, mark(f"  - http: {{{spec}}}"))


PROBE = "{{ vars.app_dir }}/bin/count-sessions"
WARN = "{{ vars.app_dir }}/bin/notify-users --minutes 5"


def sessions(probe: str = PROBE, warn: str = WARN, *, marked: str) -> str:
    """drain.sessions in block style, ``marked`` ('probe' or 'warn') carrying the marker."""
    lines = {"probe": f"    probe: {q(probe)}", "warn": f"    warn: {q(warn)}"}
    lines[marked] = mark(lines[marked])
    return book(PB_DRAIN, f"drain:\n  timeout: 5m\n  sessions:\n{lines['probe']}\n{lines['warn']}")


CREATE = "zfs snapshot tank/dxcare@{{ snapshot }}"
REVERT = "zfs rollback -r tank/dxcare@{{ snapshot }}"
DELETE = "zfs destroy tank/dxcare@{{ snapshot }}"


def snapshots(create: str = CREATE, revert: str = REVERT, delete: str = DELETE, *, marked: str = "") -> str:
    """The pool's hypervisor as snapshot commands, ``marked`` ('create', 'revert', 'delete') marked."""
    lines = {
        "create": f"      create: {q(create)}",
        "revert": f"      revert: {q(revert)}",
        "delete": f"      delete: {q(delete)}",
    }
    if marked:
        lines[marked] = mark(lines[marked])
    return inv(INV_HV, "    hypervisor:\n      type: command\n" + "\n".join(lines.values()))


def libvirt(uri: str, *, known_hosts: str | None = None, marked: str = "uri") -> str:
    lines = {"uri": f"      uri: {q(uri)}"}
    if known_hosts is not None:
        lines["known_hosts"] = f"      known_hosts: {known_hosts}"
    if marked:
        lines[marked] = mark(lines[marked])
    return inv(INV_HV, "    hypervisor:\n      type: libvirt\n" + "\n".join(lines.values()))


def loadbalancer(last: str, *, socket: bool = True) -> str:
    """The load balancer in block style, its last line ``last`` (marked)."""
    endpoint = "      socket: haproxy/admin.sock\n" if socket else ""
    return inv(INV_LB, f"    loadbalancer:\n      type: haproxy\n{endpoint}{mark('      ' + last)}")


def host(old: str, new: str, inventory: str = DX_INVENTORY) -> str:
    return edited(inventory, old, mark(new))


def inv_secrets(block: str, inventory: str = DX_INVENTORY) -> str:
    """Top-level ``secrets:`` of the inventory; ``block`` holds its entries, indented by two."""
    return edited(inventory, "\npools:\n", f"\nsecrets:\n{block}\npools:\n")


def pool_secrets(block: str, inventory: str = DX_INVENTORY) -> str:
    """``secrets:`` of pool dxcare-app; ``block`` indented by six."""
    return edited(inventory, INV_POOL_VARS, f"{INV_POOL_VARS}\n    secrets:\n{block}")


def book_secrets(block: str, playbook: str = DX_PLAYBOOK) -> str:
    return f"{playbook}secrets:\n{block}\n"


DB_PASSWORD = "  db_password: {env: DXCARE_DB_PASSWORD}"
API_TOKEN = "  api_token: {env: DXCARE_API_TOKEN}"
WITH_DB_PASSWORD = inv_secrets(DB_PASSWORD)
SINGLE_HOST = inv(f"{INV_HOST2}\n{INV_HOST3}\n", "")


Words = tuple[str | tuple[str, ...], ...]


@dataclass(frozen=True)
class Case:
    id: str
    kind: Kind | None  # None: a good input (GOOD)
    files: Mapping[str, str]  # path (relative to the case's folder) -> text
    args: tuple[str, ...]
    at: str  # the expected location; "" when a file carries the marker
    words: Words = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secret: str = ""  # a value the output must never contain
    setup: Callable[[Path], Callable[[], None]] | None = None  # returns its cleanup
    isolated: bool = False  # run as a child process with a memory limit

    def where(self) -> str:
        marked = [name for name, text in self.files.items() if MARK in text]
        if self.at:
            assert not marked, f"{self.id}: a marker and a location {self.at!r}"
            return self.at
        assert len(marked) == 1, f"{self.id}: expected one marked file, found {marked}"
        return f"{marked[0]}:{marked_line(self.files[marked[0]])}"


def bad(
    id: str,
    kind: Kind,
    *,
    playbook: str = DX_PLAYBOOK,
    inventory: str = DX_INVENTORY,
    files: Mapping[str, str] | None = None,
    args: tuple[str, ...] = VALIDATE,
    at: str = "",
    words: Words = (),
    env: Mapping[str, str] | None = None,
    secret: str = "",
    setup: Callable[[Path], Callable[[], None]] | None = None,
    isolated: bool = False,
) -> Case:
    texts = {"playbook.yaml": playbook, "inventory.yaml": inventory, **(files or {})}
    return Case(id, kind, texts, args, at, words, env or {}, secret, setup, isolated)


def good(
    id: str,
    *,
    playbook: str = DX_PLAYBOOK,
    inventory: str = DX_INVENTORY,
    files: Mapping[str, str] | None = None,
    args: tuple[str, ...] = VALIDATE,
    words: Words = (),
) -> Case:
    """The helpers mark the line they change; a good input has no mistake to point at."""
    texts = {"playbook.yaml": playbook, "inventory.yaml": inventory, **(files or {})}
    unmarked = {name: text.replace(f"  {MARK}", "") for name, text in texts.items()}
    return Case(id, None, unmarked, args, "", words)


# -- 1. template quoting and render-time errors

QUOTING = [
    bad(
        "run: template inside single quotes",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/install --site '{{ vars.site }}'"),
        words=("vars.site",),
    ),
    bad(
        "run: template inside double quotes",
        Kind.QUOTING,
        playbook=step('{{ vars.app_dir }}/bin/dxcarectl notify "release {{ vars.version }} installed"'),
        words=("vars.version",),
    ),
    bad(
        "run: template inside backquotes",
        Kind.QUOTING,
        playbook=step("echo `cat {{ vars.app_dir }}/VERSION` > /var/tmp/previous-version"),
        words=("vars.app_dir",),
    ),
    bad(
        "run: template inside $'...'",
        Kind.QUOTING,
        playbook=step("printf $'site={{ vars.site }}\\n' >> /etc/dxcare/site.conf"),
        words=("vars.site",),
    ),
    bad(
        "run: template inside ${...}",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/install --site ${DXCARE_SITE:-{{ vars.site }}}"),
        words=("vars.site",),
    ),
    bad(
        "run: template inside $((...))",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/dxcarectl set-port $(( {{ vars.app_port }} + 1 ))"),
        words=("vars.app_port",),
    ),
    bad(
        "run: template inside a # comment",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/dxcarectl reload  # site {{ vars.site }}"),
        words=("vars.site",),
    ),
    bad(
        "run: template inside a here-document",
        Kind.QUOTING,
        playbook=step("cat > /etc/dxcare/site.conf <<EOF\nsite={{ vars.site }}\nEOF"),
        words=("vars.site",),
    ),
    bad(
        "run: template right after a backslash",
        Kind.QUOTING,
        playbook=step("echo \\{{ vars.site }} > /etc/dxcare/site"),
        words=("vars.site",),
    ),
    bad(
        "run: template right after $",
        Kind.QUOTING,
        playbook=step("kill $(cat /run/${{ vars.service }}.pid)"),
        words=("vars.service",),
    ),
    bad(
        "run: template as the script of sh -c",
        Kind.QUOTING,
        playbook=step("sh -c {{ vars.service }}"),
        words=("vars.service",),
    ),
    bad(
        "run: template as an argument of eval",
        Kind.QUOTING,
        playbook=step("eval {{ vars.app_dir }}/bin/dxcarectl start"),
        words=("vars.app_dir",),
    ),
    bad(
        "command check: template inside single quotes",
        Kind.QUOTING,
        playbook=check_cmd("systemctl is-active '{{ vars.service }}'"),
        words=("vars.service",),
    ),
    bad(
        "command check: template as the script of bash -c",
        Kind.QUOTING,
        playbook=check_cmd("bash -c {{ vars.service }}"),
        words=("vars.service",),
    ),
    bad(
        "command check (block): template inside double quotes, at its own line",
        Kind.QUOTING,
        playbook=check_cmd_block('curl -sf "http://localhost:{{ vars.app_port }}/health"'),
        words=("vars.app_port",),
    ),
    bad(
        "command check: template inside a # comment",
        Kind.QUOTING,
        playbook=check_cmd("systemctl is-active dxcare # {{ vars.service }}"),
        words=("vars.service",),
    ),
    bad(
        "command check: template as an argument of eval",
        Kind.QUOTING,
        playbook=check_cmd("eval systemctl is-active {{ vars.service }}"),
        words=("vars.service",),
    ),
    bad(
        "sessions.probe: template inside single quotes",
        Kind.QUOTING,
        playbook=sessions(probe="who | grep -c '{{ vars.service }}'", marked="probe"),
        words=("vars.service",),
    ),
    bad(
        "sessions.probe: template inside backquotes",
        Kind.QUOTING,
        playbook=sessions(probe="echo `{{ vars.app_dir }}/bin/count-sessions`", marked="probe"),
        words=("vars.app_dir",),
    ),
    bad(
        "sessions.probe: template inside a here-document",
        Kind.QUOTING,
        playbook=sessions(probe=PROBE + " <<EOF\n{{ vars.site }}\nEOF", marked="probe"),
        words=("vars.site",),
    ),
    bad(
        "sessions.warn: template inside double quotes",
        Kind.QUOTING,
        playbook=sessions(
            warn='{{ vars.app_dir }}/bin/notify-users "Mise à jour {{ vars.version }} : enregistrez"',
            marked="warn",
        ),
        words=("vars.version",),
    ),
    bad(
        "sessions.warn: template as the script of sh -c",
        Kind.QUOTING,
        playbook=sessions(warn="sh -c {{ vars.app_dir }}/bin/notify-users", marked="warn"),
        words=("vars.app_dir",),
    ),
    bad(
        "hypervisor create: template inside single quotes",
        Kind.QUOTING,
        inventory=snapshots(create="zfs snapshot 'tank/dxcare@{{ snapshot }}'", marked="create"),
        words=("snapshot",),
    ),
    bad(
        "hypervisor revert: template inside double quotes",
        Kind.QUOTING,
        inventory=snapshots(revert='zfs rollback -r "tank/dxcare@{{ snapshot }}"', marked="revert"),
        words=("snapshot",),
    ),
    bad(
        "hypervisor delete: template inside ${...}",
        Kind.QUOTING,
        inventory=snapshots(delete="zfs destroy tank/dxcare@${SNAP:-{{ snapshot }}}", marked="delete"),
        words=("snapshot",),
    ),
    bad(
        "hypervisor create: template as an argument of eval",
        Kind.QUOTING,
        inventory=snapshots(create="eval zfs snapshot tank/dxcare@{{ snapshot }}", marked="create"),
        words=("snapshot",),
    ),
    bad(
        "hypervisor revert: template right after a backslash",
        Kind.QUOTING,
        inventory=snapshots(revert="zfs rollback -r tank/dxcare@\\{{ snapshot }}", marked="revert"),
        words=("snapshot",),
    ),
    bad(
        "hostile var inside the author's single quotes (run)",
        Kind.QUOTING,
        playbook=step("echo '{{ vars.motd }}' > /etc/motd"),
        inventory=inv(INV_VARS, f"vars: {{site: chu-nord, env: prod, motd: {q(HOSTILE)}}}"),
        words=("vars.motd",),
    ),
    bad(
        "hostile var inside the author's double quotes (probe)",
        Kind.QUOTING,
        playbook=sessions(probe='who | grep -c "{{ vars.motd }}"', marked="probe"),
        inventory=inv(INV_VARS, f"vars: {{site: chu-nord, env: prod, motd: {q(HOSTILE)}}}"),
        words=("vars.motd",),
    ),
    # render-time errors: one line at the template's own line, never a traceback
    bad(
        "render: {{ 1/0 }} in a run step",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/install --workers {{ 1/0 }}"),
    ),
    bad(
        "render: {{ [].pop() }} in a command check",
        Kind.QUOTING,
        playbook=check_cmd("systemctl is-active {{ [].pop() }}"),
    ),
    bad(
        "render: {{ range(10**9)|list }} in a run step",
        Kind.QUOTING,
        playbook=step("echo {{ range(10**9)|list }}"),
    ),
    bad(
        "render: {{ 'x' * 10**8 }} is over the rendered length cap",
        Kind.QUOTING,
        playbook=step("echo {{ 'x' * 10**8 }}"),
        inventory=SINGLE_HOST,
    ),
    bad(
        "render: {{ vars.__class__ }} in the http url (sandbox)",
        Kind.QUOTING,
        playbook=http('url: "http://{{ vars.__class__ }}/health"'),
    ),
    bad(
        "render: cycler.__init__.__globals__ in a run step (sandbox)",
        Kind.QUOTING,
        playbook=step("echo {{ cycler.__init__.__globals__ }}"),
    ),
    bad(
        "render: undefined name in sessions.warn, at the warn line",
        Kind.QUOTING,
        playbook=sessions(warn="{{ vars.app_dir }}/bin/notify-users {{ vars.mesage }}", marked="warn"),
        words=("mesage",),
    ),
    bad(
        "render: undefined name in the hypervisor delete command",
        Kind.QUOTING,
        inventory=snapshots(delete="zfs destroy {{ vars.zpool }}/dxcare@{{ snapshot }}", marked="delete"),
        words=("zpool",),
    ),
    bad(
        "render: undefined name in a tcp address",
        Kind.QUOTING,
        playbook=book(PB_TCP, mark('  - tcp: {port: 8443, address: "{{ host.adress }}"}')),
        words=("adress",),
    ),
    bad(
        "render: syntax error in a block command check, at the run line",
        Kind.QUOTING,
        playbook=check_cmd_block("systemctl is-active {{ vars.service }"),
    ),
    bad(
        "render: {% for %} without {% endfor %}",
        Kind.QUOTING,
        playbook=step("{% for f in vars.old_releases %}rm -f /var/tmp/{{ f }}; "),
    ),
    bad(
        "render: a filter that does not exist",
        Kind.QUOTING,
        playbook=step("{{ vars.app_dir }}/bin/install --site {{ vars.site | shellquote }}"),
        words=("shellquote",),
    ),
]


# -- 2. names

NAMES = [
    bad(
        "backend with a second runtime-API command after ';'",
        Kind.NAMES,
        inventory=loadbalancer('backend: "dxcare_app; shutdown sessions server dxcare_app/dxapp01"'),
        words=("backend",),
    ),
    bad(
        "backend with a second runtime-API command after a newline",
        Kind.NAMES,
        inventory=loadbalancer('backend: "dxcare_app\\nset server dxcare_app/dxapp01 state maint"'),
        words=("backend",),
    ),
    bad("backend empty", Kind.NAMES, inventory=loadbalancer('backend: ""'), words=("backend",)),
    bad(
        "backend of 65 characters",
        Kind.NAMES,
        inventory=loadbalancer(f"backend: dxcare_{'a' * 58}"),
        words=("backend",),
    ),
    bad(
        "backend with unicode", Kind.NAMES, inventory=loadbalancer("backend: dxcare_appé"), words=("backend",)
    ),
    bad(
        "backend with a space",
        Kind.NAMES,
        inventory=loadbalancer('backend: "dxcare app"'),
        words=("backend",),
    ),
    bad(
        "lb_server with a second command after ';'",
        Kind.NAMES,
        inventory=host(
            INV_HOST1, '      dxapp01: {address: 10.40.2.11, lb_server: "dxapp01;disable frontend fe"}'
        ),
        words=("lb_server",),
    ),
    bad(
        "lb_server with a space",
        Kind.NAMES,
        inventory=host(INV_HOST2, '      dxapp02: {address: 10.40.2.12, lb_server: "dxapp 02"}'),
        words=("lb_server",),
    ),
    bad(
        "lb_server with a slash",
        Kind.NAMES,
        inventory=host(INV_HOST2, '      dxapp02: {address: 10.40.2.12, lb_server: "dxcare_app/dxapp02"}'),
        words=("lb_server",),
    ),
    bad(
        "lb_server with '#'",
        Kind.NAMES,
        inventory=host(INV_HOST2, '      dxapp02: {address: 10.40.2.12, lb_server: "dxapp02#2"}'),
        words=("lb_server",),
    ),
    bad(
        "lb_server empty",
        Kind.NAMES,
        inventory=host(INV_HOST2, '      dxapp02: {address: 10.40.2.12, lb_server: ""}'),
        words=("lb_server",),
    ),
    bad(
        "lb_server of 65 characters",
        Kind.NAMES,
        inventory=host(INV_HOST2, f"      dxapp02: {{address: 10.40.2.12, lb_server: dxapp02{'x' * 58}}}"),
        words=("lb_server",),
    ),
    bad(
        "pool name with a space",
        Kind.NAMES,
        inventory=inv("  dxcare-app:\n", mark('  "dxcare app":') + "\n"),
        words=("dxcare app",),
    ),
    bad(
        "pool name with a slash",
        Kind.NAMES,
        inventory=inv("  dxcare-app:\n", mark("  dxcare/app:") + "\n"),
        words=("dxcare/app",),
    ),
    bad(
        "host name starting with a dash (an option to ssh)",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      "-dxapp01": {address: 10.40.2.11}'),
        words=("-dxapp01",),
    ),
    bad(
        "host name of 65 characters",
        Kind.NAMES,
        inventory=host(INV_HOST1, f"      dxapp01{'x' * 58}: {{address: 10.40.2.11}}"),
    ),
    bad(
        "host name with unicode",
        Kind.NAMES,
        inventory=host(INV_HOST1, "      dxappé1: {address: 10.40.2.11}"),
        words=("dxappé1",),
    ),
    bad(
        "host name empty",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      "": {address: 10.40.2.11}'),
    ),
    bad(
        "domain with a space",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      dxapp01: {address: 10.40.2.11, domain: "vm dxapp01"}'),
        words=("domain",),
    ),
    bad(
        "domain with ';'",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      dxapp01: {address: 10.40.2.11, domain: "vm-dxapp01;reboot"}'),
        words=("domain",),
    ),
    bad(
        "domain starting with a dash",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      dxapp01: {address: 10.40.2.11, domain: "-vm-dxapp01"}'),
        words=("domain",),
    ),
    bad(
        "domain with a newline",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      dxapp01: {address: 10.40.2.11, domain: "vm-dxapp01\\nvm-dxapp02"}'),
        words=("domain",),
    ),
    bad(
        "domain with a path",
        Kind.NAMES,
        inventory=host(INV_HOST1, '      dxapp01: {address: 10.40.2.11, domain: "../vm-dxapp01"}'),
        words=("domain",),
    ),
    bad(
        "haproxy address with port 65536",
        Kind.NAMES,
        inventory=inv(
            INV_LB, mark('    loadbalancer: {type: haproxy, address: "10.40.0.5:65536", backend: dxcare_app}')
        ),
        words=("address",),
    ),
    bad(
        "haproxy address with a port name",
        Kind.NAMES,
        inventory=inv(
            INV_LB, mark('    loadbalancer: {type: haproxy, address: "haproxy01:admin", backend: dxcare_app}')
        ),
        words=("address",),
    ),
    bad(
        "haproxy socket empty",
        Kind.NAMES,
        inventory=inv(INV_LB, mark('    loadbalancer: {type: haproxy, socket: "", backend: dxcare_app}')),
        words=("socket",),
    ),
]


# -- 3. secrets

TWO_POOLS = (
    DX_INVENTORY
    + """\
  dxcare-reports:
    loadbalancer: {type: haproxy, socket: haproxy/admin.sock, backend: dxcare_reports}
    hypervisor: {type: none}
    ssh: {user: root, key: keys/id_ed25519, known_hosts: keys/known_hosts}
    secrets:
      reports_token: {env: DXCARE_REPORTS_TOKEN}
    hosts:
      dxrep01: {address: 10.40.3.21}
"""
)
PLANTED = "tok-7Hq2-planted-in-env"
SITE_INVENTORY = inv_secrets(
    mark("  db_password: {file: dxcare-db}"),
    edited(
        DX_INVENTORY,
        INV_SSH,
        f"    ssh: {{user: root, key: {TMP}/keys/id_ed25519, known_hosts: {TMP}/keys/known_hosts}}",
    ),
)
DB_STEP = "{{ vars.app_dir }}/bin/dbcheck --password {{ secrets.db_password }}"

SECRETS = [
    bad(
        "secret with both env and file",
        Kind.SECRETS,
        inventory=inv_secrets(mark("  db_password: {env: DXCARE_DB_PASSWORD, file: /run/secrets/dxcare-db}")),
        words=("db_password",),
    ),
    bad(
        "secret with neither env nor file",
        Kind.SECRETS,
        inventory=inv_secrets(mark("  db_password: {}")),
        words=("db_password",),
    ),
    bad(
        "secret with an unknown key",
        Kind.SECRETS,
        inventory=inv_secrets(mark("  db_password: {env: DXCARE_DB_PASSWORD, optional: true}")),
        words=("optional",),
    ),
    bad(
        "secret name with a dash",
        Kind.SECRETS,
        inventory=inv_secrets(mark("  db-password: {env: DXCARE_DB_PASSWORD}")),
        words=("db-password",),
    ),
    bad(
        "secret name starting with a digit (playbook)",
        Kind.SECRETS,
        playbook=book_secrets(mark("  2fa_seed: {file: /run/secrets/dxcare-2fa}")),
        words=("2fa_seed",),
    ),
    bad(
        "secret env var name with dashes",
        Kind.SECRETS,
        inventory=inv_secrets(mark("  db_password: {env: DXCARE-DB-PASSWORD}")),
        words=("DXCARE-DB-PASSWORD",),
    ),
    bad(
        "secret env var name written as $VAR",
        Kind.SECRETS,
        inventory=pool_secrets(mark('      db_password: {env: "$DXCARE_DB_PASSWORD"}')),
        words=("$DXCARE_DB_PASSWORD",),
    ),
    bad(
        "secrets given as a list",
        Kind.SECRETS,
        inventory=edited(DX_INVENTORY, "\npools:\n", "\n" + mark("secrets: [db_password]") + "\npools:\n"),
        words=("secrets",),
    ),
    bad(
        "secret used but never declared",
        Kind.SECRETS,
        playbook=step(DB_STEP),
        words=("db_password",),
    ),
    bad(
        "secret name misspelt where it is used",
        Kind.SECRETS,
        playbook=step("{{ vars.app_dir }}/bin/dbcheck --password {{ secrets.db_pasword }}"),
        inventory=WITH_DB_PASSWORD,
        words=("db_pasword",),
    ),
    bad(
        "secret declared for another pool only",
        Kind.SECRETS,
        playbook=step("{{ vars.app_dir }}/bin/report-sync --token {{ secrets.reports_token }}"),
        inventory=TWO_POOLS,
        words=("reports_token",),
    ),
    bad(
        "secret in an upload src",
        Kind.SECRETS,
        playbook=book(
            PB_UPLOAD, mark('  - upload: {src: "{{ secrets.db_password }}.tar.gz", dest: /var/tmp/a.tgz}')
        ),
        inventory=WITH_DB_PASSWORD,
        words=("secret",),
    ),
    bad(
        "secret in an upload dest",
        Kind.SECRETS,
        playbook=book(
            PB_UPLOAD,
            mark('  - upload: {src: dxcare-2026.12.tar.gz, dest: "/tmp/{{ secrets.db_password }}"}'),
        ),
        inventory=WITH_DB_PASSWORD,
        words=("secret",),
    ),
    bad(
        "secret in snapshot.name",
        Kind.SECRETS,
        playbook=book(PB_SNAPSHOT, mark('snapshot: {enabled: true, name: "pre-{{ secrets.db_password }}"}')),
        inventory=WITH_DB_PASSWORD,
        words=("secret",),
    ),
    bad(
        "secret as a tcp address",
        Kind.SECRETS,
        playbook=book(PB_TCP, mark('  - tcp: {port: 5432, address: "{{ secrets.db_host }}"}')),
        inventory=inv_secrets("  db_host: {file: /run/secrets/dxcare-db-host}"),
        words=("secret",),
    ),
    bad(
        "secret as a json expected value",
        Kind.SECRETS,
        playbook=http(
            'url: "http://{{ host.address }}:8080/health", json: {token: "{{ secrets.api_token }}"}'
        ),
        inventory=inv_secrets(API_TOKEN),
        words=("secret",),
    ),
    bad(
        "secret as a contains expected value",
        Kind.SECRETS,
        playbook=http('url: "http://{{ host.address }}:8080/login", contains: "{{ secrets.api_token }}"'),
        inventory=inv_secrets(API_TOKEN),
        words=("secret",),
    ),
    bad(
        "secret as the host of a url",
        Kind.SECRETS,
        playbook=http('url: "http://{{ secrets.api_host }}:8080/health"'),
        inventory=inv_secrets("  api_host: {env: DXCARE_API_HOST}"),
        words=("secret",),
    ),
    bad(
        "secret through a filter",
        Kind.SECRETS,
        playbook=step("{{ vars.app_dir }}/bin/dbcheck --password {{ secrets.db_password | upper }}"),
        inventory=WITH_DB_PASSWORD,
        words=("db_password",),
    ),
    bad(
        "secret concatenated",
        Kind.SECRETS,
        playbook=step("{{ vars.app_dir }}/bin/dbcheck --password {{ secrets.db_password ~ '!' }}"),
        inventory=WITH_DB_PASSWORD,
        words=("db_password",),
    ),
    bad(
        "header name that is not a token",
        Kind.SECRETS,
        playbook=http(
            'url: "http://{{ host.address }}:8080/health", '
            'headers: {"X Api Token": "{{ secrets.api_token }}"}'
        ),
        inventory=inv_secrets(API_TOKEN),
        words=("X Api Token",),
    ),
    bad(
        "header name with a colon",
        Kind.SECRETS,
        playbook=http('url: "http://{{ host.address }}:8080/health", headers: {"X-Site:": chu-nord}'),
        words=("X-Site:",),
    ),
    bad(
        "header value with CR LF",
        Kind.SECRETS,
        playbook=http(
            'url: "http://{{ host.address }}:8080/health", headers: {X-Site: "chu-nord\\r\\nX-Admin: 1"}'
        ),
        words=("X-Site",),
    ),
    bad(
        "Authorization header and user:password@ in the url",
        Kind.SECRETS,
        playbook=book_secrets(
            "  health_pw: {env: DXCARE_HEALTH_PW}",
            http(
                'url: "http://monitor:{{ secrets.health_pw }}@{{ host.address }}:8080/health", '
                'headers: {Authorization: "Basic ZHg6eA=="}'
            ),
        ),
        words=("Authorization",),
    ),
    # `run` resolves secrets (in-process worker) before contacting any server
    bad(
        "run: a secret's env var is unset (another secret's value is never printed)",
        Kind.SECRETS,
        args=RUN,
        playbook=step(
            "{{ vars.app_dir }}/bin/dbcheck --token {{ secrets.api_token }}"
            " --password {{ secrets.db_password }}",
            marked=False,
        ),
        inventory=inv_secrets(f"{API_TOKEN}\n{mark(DB_PASSWORD)}"),
        env={"DXCARE_API_TOKEN": PLANTED},
        secret=PLANTED,
        words=("DXCARE_DB_PASSWORD",),
    ),
    bad(
        "run: a secret file is missing",
        Kind.SECRETS,
        args=RUN,
        playbook=step(DB_STEP, marked=False),
        inventory=inv_secrets(mark(f"  db_password: {{file: {TMP}/secrets/dxcare-db}}")),
        words=("dxcare-db",),
    ),
    bad(
        "run: a relative secret file counts from the inventory's folder, not the working directory",
        Kind.SECRETS,
        args=("run", "playbook.yaml", "-i", "site/inventory.yaml"),
        playbook=step(DB_STEP, marked=False),
        files={"site/inventory.yaml": SITE_INVENTORY, "dxcare-db": "Pl4nted-in-the-working-directory\n"},
        secret="Pl4nted-in-the-working-directory",
        words=("dxcare-db",),
    ),
    bad(
        "run: a playbook secret's env var is unset",
        Kind.SECRETS,
        args=RUN,
        playbook=book_secrets(
            mark("  health_pw: {env: DXCARE_HEALTH_PW}"),
            http('url: "http://monitor:{{ secrets.health_pw }}@{{ host.address }}:8080/health"').replace(
                MARK, ""
            ),
        ),
        env={"DXCARE_HEALTH_PW_OLD": PLANTED},
        secret=PLANTED,
        words=("DXCARE_HEALTH_PW",),
    ),
    bad(
        "run: a pool secret file is missing",
        Kind.SECRETS,
        args=RUN,
        playbook=step(DB_STEP, marked=False),
        inventory=pool_secrets(mark("      db_password: {file: secrets/dxcare-db}")),
        words=("dxcare-db",),
    ),
]


# -- 4. bounded YAML


def alias_bomb() -> str:
    """A billion laughs: nine levels of nine aliases (387 million strings once expanded)."""
    names = "abcdefghi"
    lines = [mark('  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')]
    lines += [f"  {cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]" for prev, cur in pairwise(names)]
    return book(PB_VARS, 'vars:\n  version: "2026.12"\n' + "\n".join(lines))


def nested(opening: str, closing: str, depth: int) -> str:
    return opening * depth + "1" + closing * depth


def fifo_playbook(folder: Path) -> Callable[[], None]:
    """pipe.yaml is a FIFO whose writer offers 6 MiB (not YAML from its first byte), then closes."""
    path = folder / "pipe.yaml"
    os.mkfifo(path)

    def feed() -> None:
        try:
            with path.open("wb") as pipe:  # waits for a reader
                pipe.write(b"@")
                for _ in range(6):
                    pipe.write(b"#" * (1 << 20))
        except BrokenPipeError:  # the reader stopped reading: what it should do after 5 MB
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()

    def cleanup() -> None:
        if writer.is_alive():  # never opened: open it once so that the writer's open returns
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)

    return cleanup


BIG = 5 * 1024 * 1024 + 200_000
SIZE_WORDS: Words = (("5 MB", "5 MiB", "5MB", "5MiB", "5242880", "5 242 880"),)

YAML = [
    bad(
        "anchor and alias (at the anchor)",
        Kind.YAML,
        inventory=inv(INV_VARS, mark("vars: &site {site: chu-nord, env: prod}")).replace(
            "service: dxcare}", "service: dxcare, defaults: *site}"
        ),
        words=("anchor",),
    ),
    bad(
        "anchor without alias",
        Kind.YAML,
        playbook=book(PB_DRAIN, mark("drain: &drain {timeout: 5m}")),
        words=("anchor",),
    ),
    bad("alias bomb (billion laughs)", Kind.YAML, playbook=alias_bomb(), words=("anchor",)),
    bad(
        "merge key with an alias (at the anchor)",
        Kind.YAML,
        inventory=inv(
            INV_HOST1, mark("      dxapp01: &dxhost {address: 10.40.2.11, domain: vm-dxapp01}")
        ).replace(INV_HOST2, "      dxapp02: {<<: *dxhost, address: 10.40.2.12, domain: vm-dxapp02}"),
        words=("anchor",),
    ),
    bad(
        "merge key with an inline mapping",
        Kind.YAML,
        inventory=host(INV_HOST2, "      dxapp02: {<<: {domain: vm-dxapp02}, address: 10.40.2.12}"),
        words=("<<",),
    ),
    bad(
        "playbook over 5 MB",
        Kind.YAML,
        playbook=DX_PLAYBOOK + ("# " + "x" * 98 + "\n") * (BIG // 100),
        at="playbook.yaml",
        words=SIZE_WORDS,
    ),
    bad(
        "inventory over 5 MB",
        Kind.YAML,
        inventory=inv(INV_VARS, f"vars: {{site: chu-nord, env: prod, motd: {'x' * BIG}}}"),
        at="inventory.yaml",
        words=SIZE_WORDS,
    ),
    bad(
        "mappings nested 100 deep (over 64)",
        Kind.YAML,
        playbook=book(PB_VARS, mark(f'vars: {{version: "2026.12", tree: {nested("{a: ", "}", 100)}}}')),
    ),
    bad(
        "lists nested 100 deep (over 64)",
        Kind.YAML,
        inventory=inv(
            INV_POOL_VARS,
            mark(INV_POOL_VARS.replace("dxcare}", f"dxcare, m: {nested('[', ']', 100)}}}")),
        ),
    ),
    bad(
        "lists nested 5000 deep",
        Kind.YAML,
        playbook=book(PB_VARS, mark(f'vars: {{version: "2026.12", deep: {nested("[", "]", 5000)}}}')),
    ),
    bad(
        "a FIFO as the playbook is read at most 5 MB",
        Kind.YAML,
        args=("validate", "pipe.yaml", "-i", "inventory.yaml"),
        at="pipe.yaml",
        setup=fifo_playbook,
    ),
    bad(
        "/dev/zero as the playbook is read at most 5 MB",
        Kind.YAML,
        args=("validate", "/dev/zero", "-i", "inventory.yaml"),
        at="/dev/zero",
        isolated=True,
    ),
    bad(
        "two documents in the playbook",
        Kind.YAML,
        playbook=DX_PLAYBOOK + mark("---") + "\nname: dxcare-2027.01\n",
        words=("document",),
    ),
]


# -- 5. crashes today

HUGE = "9" * 5000
STORE_URL = "ORCH_DATABASE_URL"

TRACEBACK = [
    bad(
        "!vault tag (Ansible habit)",
        Kind.TRACEBACK,
        inventory=inv(
            INV_VARS, mark('vars: {site: chu-nord, env: prod, db_password: !vault "$ANSIBLE_VAULT;1.1"}')
        ),
        words=("!vault",),
    ),
    bad(
        "!!python/object/apply tag",
        Kind.TRACEBACK,
        playbook=book(PB_VARS, mark('vars: {version: !!python/object/apply:os.system ["id"]}')),
        words=("python/object",),
    ),
    bad(
        "!include tag",
        Kind.TRACEBACK,
        playbook=book(PB_VARS, mark("vars: !include common-vars.yaml")),
        words=("!include",),
    ),
    bad(
        "complex key: a list",
        Kind.TRACEBACK,
        inventory=inv(
            INV_HOSTS,
            "    hosts:\n" + mark("      ? [dxapp01, dxapp02]") + "\n      : {address: 10.40.2.11}\n",
        ),
    ),
    bad(
        "complex key: a mapping in flow style",
        Kind.TRACEBACK,
        playbook=book(PB_VARS, mark('vars: {version: "2026.12", {site: chu-nord}: x}')),
    ),
    bad(
        "int of 5000 digits as a batch size",
        Kind.TRACEBACK,
        playbook=book(PB_STRATEGY, mark(f"strategy: {{batches: [1, {HUGE}], on_failure: halt}}")),
    ),
    bad(
        "int of 5000 digits as a tcp port",
        Kind.TRACEBACK,
        playbook=book(PB_TCP, mark(f"  - tcp: {{port: {HUGE}}}")),
    ),
    bad(
        "hosts given as a list",
        Kind.TRACEBACK,
        inventory=inv(
            INV_HOSTS,
            mark("    hosts:")
            + "\n      - dxapp01: {address: 10.40.2.11}\n      - dxapp02: {address: 10.40.2.12}\n",
        ),
        words=("hosts",),
    ),
    bad(
        "pools given as a list",
        Kind.TRACEBACK,
        inventory=f"{INV_VARS}\n{mark('pools: [dxcare-app]')}\n",
        words=("pools",),
    ),
    bad(
        "ssh user empty",
        Kind.TRACEBACK,
        inventory=inv(
            INV_SSH, mark('    ssh: {user: "", key: keys/id_ed25519, known_hosts: keys/known_hosts}')
        ),
        words=("user",),
    ),
    bad(
        "ORCH_DATABASE_URL with an unknown driver",
        Kind.TRACEBACK,
        args=("history",),
        env={STORE_URL: "nosuchdriver://x"},
        at=STORE_URL,
        words=("nosuchdriver",),
    ),
    bad(
        "ORCH_DATABASE_URL with a driver that is not installed",
        Kind.TRACEBACK,
        args=("history",),
        env={STORE_URL: "mysql://dxcare:secretpw@127.0.0.1:1/orchestrator"},
        at=STORE_URL,
        secret="secretpw",
    ),
    bad(
        "ORCH_DATABASE_URL that is not a URL",
        Kind.TRACEBACK,
        args=("history",),
        env={STORE_URL: "the hospital database"},
        at=STORE_URL,
    ),
    bad(
        "ORCH_DATABASE_URL: a SQLite file under a regular file",
        Kind.TRACEBACK,
        args=("history",),
        files={"not-a-folder": "x\n"},
        env={STORE_URL: f"sqlite:///{TMP}/not-a-folder/orchestrator.db"},
        at=STORE_URL,
    ),
    bad(
        "Rich markup in a missing playbook's path",
        Kind.TRACEBACK,
        args=("validate", "[/dxcare].yaml", "-i", "inventory.yaml"),
        at="[/dxcare].yaml",
    ),
    bad(
        "Rich markup in a missing inventory's path",
        Kind.TRACEBACK,
        args=("validate", "playbook.yaml", "-i", "[bold]inventory.yaml"),
        at="[bold]inventory.yaml",
    ),
    bad(
        "Rich markup in a value",
        Kind.TRACEBACK,
        playbook=book(PB_POOL, mark('pool: "[bold]dxcare-app"')),
        words=("[bold]dxcare-app",),
    ),
    bad(
        "Rich markup in --hosts",
        Kind.TRACEBACK,
        args=(*PLAN, "--hosts", "[/dxapp01]"),
        at="--hosts",
        words=("[/dxapp01]",),
    ),
    bad(
        "schedule --at year 99999",
        Kind.TRACEBACK,
        args=(*SCHEDULE, "--at", "99999-01-01"),
        at="--at",
        words=("99999-01-01",),
    ),
    bad(
        "schedule --at February 30",
        Kind.TRACEBACK,
        args=(*SCHEDULE, "--at", "2026-02-30 01:00"),
        at="--at",
        words=("2026-02-30 01:00",),
    ),
    bad(
        "schedule --at yesterday",
        Kind.TRACEBACK,
        args=(*SCHEDULE, "--at", "yesterday"),
        at="--at",
        words=("yesterday",),
    ),
    bad(
        "schedule --at past year 9999 in UTC",
        Kind.TRACEBACK,
        args=(*SCHEDULE, "--at", "9999-12-31T23:59-12:00"),
        at="--at",
    ),
    bad(
        "schedule --at before year 1 in UTC",
        Kind.TRACEBACK,
        args=(*SCHEDULE, "--at", "0001-01-01T00:30+14:00"),
        at="--at",
    ),
    bad(
        "ORCH_RECONCILE_EVERY=abc",
        Kind.TRACEBACK,
        args=("history",),
        env={"ORCH_RECONCILE_EVERY": "abc"},
        at="ORCH_RECONCILE_EVERY",
        words=("abc",),
    ),
    bad(
        "ORCH_RECONCILE_EVERY=0",
        Kind.TRACEBACK,
        args=("history",),
        env={"ORCH_RECONCILE_EVERY": "0"},
        at="ORCH_RECONCILE_EVERY",
    ),
    bad(
        "ORCH_RECONCILE_EVERY=-1",
        Kind.TRACEBACK,
        args=RUN,
        env={"ORCH_RECONCILE_EVERY": "-1"},
        at="ORCH_RECONCILE_EVERY",
    ),
    bad(
        "ORCH_RECONCILE_EVERY=inf",
        Kind.TRACEBACK,
        args=("history",),
        env={"ORCH_RECONCILE_EVERY": "inf"},
        at="ORCH_RECONCILE_EVERY",
        words=("inf",),
    ),
    bad(
        "ORCH_RECONCILE_EVERY=nan",
        Kind.TRACEBACK,
        args=RUN,
        env={"ORCH_RECONCILE_EVERY": "nan"},
        at="ORCH_RECONCILE_EVERY",
        words=("nan",),
    ),
    bad(
        "ORCH_WORKER_CONCURRENCY=2.5",
        Kind.TRACEBACK,
        args=("history",),
        env={"ORCH_WORKER_CONCURRENCY": "2.5"},
        at="ORCH_WORKER_CONCURRENCY",
        words=("2.5",),
    ),
    bad(
        "ORCH_WORKER_CONCURRENCY=0.5",
        Kind.TRACEBACK,
        args=RUN,
        env={"ORCH_WORKER_CONCURRENCY": "0.5"},
        at="ORCH_WORKER_CONCURRENCY",
        words=("0.5",),
    ),
    bad(
        "ORCH_LOCK_STALE_AFTER=1e999",
        Kind.TRACEBACK,
        args=("history",),
        env={"ORCH_LOCK_STALE_AFTER": "1e999"},
        at="ORCH_LOCK_STALE_AFTER",
        words=("1e999",),
    ),
]


# -- 6. the error comes from the kind written, at the field's own line, with no class name in its path

UPLOAD_BLOCK = "  - upload:\n      src: dxcare-2026.12.tar.gz\n      dest: /var/tmp/dxcare-2026.12.tar.gz\n"

UNION = [
    bad(
        "upload: 'mod' for 'mode'",
        Kind.UNION,
        playbook=book(
            PB_UPLOAD, mark('  - upload: {src: dxcare-2026.12.tar.gz, dest: /var/tmp/a.tgz, mod: "0640"}')
        ),
        words=("'mod'",),
    ),
    bad(
        "upload: a bad step timeout at its own line",
        Kind.UNION,
        playbook=book(PB_UPLOAD, PB_UPLOAD + "\n" + mark("    timeout: soon")),
        words=("update.0.timeout", "soon"),
    ),
    bad(
        "upload without src",
        Kind.UNION,
        playbook=book(PB_UPLOAD, mark('  - upload: {dest: /var/tmp/dxcare-2026.12.tar.gz, mode: "0640"}')),
        words=("'src'",),
    ),
    bad(
        "upload: an unknown step field at its own line",
        Kind.UNION,
        playbook=book(PB_UPLOAD, PB_UPLOAD + "\n" + mark("    retries: 3")),
        words=("retries",),
    ),
    bad(
        "upload given as a string",
        Kind.UNION,
        playbook=book(PB_UPLOAD, mark("  - upload: dxcare-2026.12.tar.gz")),
        words=("upload",),
    ),
    bad(
        "upload (block): dest a number at its own line",
        Kind.UNION,
        playbook=book(PB_UPLOAD, "  - upload:\n      src: dxcare-2026.12.tar.gz\n" + mark("      dest: 42")),
        words=("dest",),
    ),
    bad(
        "upload (block): bad mode at its own line",
        Kind.UNION,
        playbook=book(PB_UPLOAD, UPLOAD_BLOCK + mark("      mode: u+rw")),
        words=("u+rw",),
    ),
    bad(
        "tcp: port as a service name",
        Kind.UNION,
        playbook=book(PB_TCP, mark("  - tcp: {port: https}")),
        words=("https",),
    ),
    bad(
        "tcp without port",
        Kind.UNION,
        playbook=book(PB_TCP, mark('  - tcp: {address: "{{ host.address }}"}')),
        words=("'port'",),
    ),
    bad(
        "tcp (block): a typo at its own line",
        Kind.UNION,
        playbook=book(PB_TCP, "  - tcp:\n      port: 8443\n" + mark('      adress: "{{ host.address }}"')),
        words=("adress",),
    ),
    bad(
        "command check: a typo",
        Kind.UNION,
        playbook=book(PB_CMD, mark('  - command: {run: "systemctl is-active dxcare", timout: 10s}')),
        words=("timout",),
    ),
    bad(
        "command check without run",
        Kind.UNION,
        playbook=book(PB_CMD, mark("  - command: {timeout: 10s}")),
        words=("'run'",),
    ),
    bad(
        "command check (block): a bad timeout at its own line",
        Kind.UNION,
        playbook=book(
            PB_CMD, '  - command:\n      run: "systemctl is-active dxcare"\n' + mark("      timeout: 10 sec")
        ),
        words=("checks.2.command.timeout",),
    ),
    bad(
        "revert_checks: tcp typo",
        Kind.UNION,
        playbook=DX_PLAYBOOK + "revert_checks:\n" + mark("  - tcp: {port: 8443, timeuot: 2s}") + "\n",
        words=("timeuot",),
    ),
    bad(
        "run step: a bad timeout at its own line, no class name in the path",
        Kind.UNION,
        playbook=book(PB_RUN_TIMEOUT, mark("    timeout: ten minutes")),
        words=("update.1.timeout",),
    ),
]


# -- 7. mistakes that today show only after a server was drained

HEALTH = "{{ host.address }}:{{ vars.app_port }}/health"

LATE = [
    bad("check url without a scheme", Kind.LATE, playbook=http(f"url: {q(HEALTH)}"), words=("url",)),
    bad("check url with ftp://", Kind.LATE, playbook=http(f"url: {q('ftp://' + HEALTH)}"), words=("ftp",)),
    bad(
        "check url with port 99999",
        Kind.LATE,
        playbook=http('url: "http://{{ host.address }}:99999/health"'),
        words=("99999",),
    ),
    bad(
        "check url with port :abc",
        Kind.LATE,
        playbook=http('url: "http://{{ host.address }}:abc/health"'),
        words=("abc",),
    ),
    bad("check url without a host", Kind.LATE, playbook=http('url: "http:///health"'), words=("url",)),
    bad("check url empty", Kind.LATE, playbook=http('url: ""'), words=("url",)),
    bad(
        "revert_checks url with a misspelt scheme",
        Kind.LATE,
        playbook=DX_PLAYBOOK + "revert_checks:\n" + mark(f"  - http: {{url: {q('htp://' + HEALTH)}}}") + "\n",
        words=("htp",),
    ),
    bad(
        "json expected value with an undefined name",
        Kind.LATE,
        playbook=http(f"url: {q('http://' + HEALTH)}, json: {{version: {q('{{ vars.relase }}')}}}"),
        words=("relase",),
    ),
    bad(
        "contains expected value with {{ 1/0 }}",
        Kind.LATE,
        playbook=http(f"url: {q('http://' + HEALTH)}, contains: {q('DxCare {{ 1/0 }}')}"),
    ),
    bad(
        "upload dest empty",
        Kind.LATE,
        playbook=book(PB_UPLOAD, mark('  - upload: {src: dxcare-2026.12.tar.gz, dest: ""}')),
        words=("dest",),
    ),
    bad("run step empty", Kind.LATE, playbook=step(""), words=("run",)),
    bad("run step of spaces only", Kind.LATE, playbook=step("   "), words=("run",)),
    bad("command check empty", Kind.LATE, playbook=check_cmd(""), words=("run",)),
    bad("sessions probe empty", Kind.LATE, playbook=sessions(probe="", marked="probe"), words=("probe",)),
    bad(
        "haproxy address without a port",
        Kind.LATE,
        inventory=inv(
            INV_LB, mark("    loadbalancer: {type: haproxy, address: 10.40.0.5, backend: dxcare_app}")
        ),
        words=("10.40.0.5",),
    ),
    bad(
        "haproxy address without a host",
        Kind.LATE,
        inventory=inv(
            INV_LB, mark('    loadbalancer: {type: haproxy, address: ":9999", backend: dxcare_app}')
        ),
        words=(":9999",),
    ),
    bad(
        "haproxy address with port 0",
        Kind.LATE,
        inventory=inv(
            INV_LB, mark('    loadbalancer: {type: haproxy, address: "haproxy01:0", backend: dxcare_app}')
        ),
        words=("haproxy01:0",),
    ),
    bad("tcp port 0", Kind.LATE, playbook=book(PB_TCP, mark("  - tcp: {port: 0}")), words=("port",)),
    bad("tcp port 70000", Kind.LATE, playbook=book(PB_TCP, mark("  - tcp: {port: 70000}")), words=("70000",)),
]


# -- 8. values quietly reinterpreted


def strategy(fields: str) -> str:
    return book(PB_STRATEGY, mark(f'strategy: {{batches: [1, "50%"], on_failure: halt, {fields}}}'))


def window(ranges: str, playbook: str = DX_PLAYBOOK) -> str:
    return playbook + mark(f"window: {{timezone: Europe/Paris, allowed: {ranges}}}") + "\n"


REINTERPRETED = [
    bad("step timeout .inf", Kind.REINTERPRETED, playbook=book(PB_RUN_TIMEOUT, mark("    timeout: .inf"))),
    bad("drain timeout .nan", Kind.REINTERPRETED, playbook=book(PB_DRAIN, mark("drain: {timeout: .nan}"))),
    bad(
        "step timeout 100000h",
        Kind.REINTERPRETED,
        playbook=book(PB_RUN_TIMEOUT, mark("    timeout: 100000h")),
        words=("100000h",),
    ),
    bad(
        "approval_timeout 800h (over 30 days)",
        Kind.REINTERPRETED,
        playbook=strategy("approval_timeout: 800h"),
    ),
    bad(
        "capacity_timeout 30 days and one second",
        Kind.REINTERPRETED,
        playbook=strategy("capacity_timeout: 2592001"),
    ),
    bad("drain timeout -30s", Kind.REINTERPRETED, playbook=book(PB_DRAIN, mark("drain: {timeout: -30s}"))),
    bad(
        "stabilize interval -1",
        Kind.REINTERPRETED,
        playbook=book(PB_STABILIZE, mark("stabilize: {interval: -1, successes: 3, timeout: 2m}")),
    ),
    bad(
        "deadlines.host 0",
        Kind.REINTERPRETED,
        playbook=DX_PLAYBOOK + mark("deadlines: {host: 0, rollout: 4h}") + "\n",
        words=("deadlines.host",),
    ),
    bad(
        "deadlines.rollout 0",
        Kind.REINTERPRETED,
        playbook=DX_PLAYBOOK + mark("deadlines: {host: 45m, rollout: 0s}") + "\n",
        words=("deadlines.rollout",),
    ),
    bad(
        "step timeout 0",
        Kind.REINTERPRETED,
        playbook=book(PB_UPLOAD, PB_UPLOAD + "\n" + mark("    timeout: 0")),
        words=("timeout",),
    ),
    bad(
        "stabilize successes 0",
        Kind.REINTERPRETED,
        playbook=book(PB_STABILIZE, mark("stabilize: {interval: 2s, successes: 0, timeout: 2m}")),
        words=("successes",),
    ),
    bad(
        "max_unavailable 0",
        Kind.REINTERPRETED,
        playbook=strategy("max_unavailable: 0"),
        words=("max_unavailable",),
    ),
    bad(
        "max_unavailable '0%'",
        Kind.REINTERPRETED,
        playbook=strategy('max_unavailable: "0%"'),
        words=("max_unavailable",),
    ),
    bad(
        "min_healthy '100%'",
        Kind.REINTERPRETED,
        playbook=strategy('min_healthy: "100%"'),
        words=("min_healthy",),
    ),
    bad(
        "batches [true]",
        Kind.REINTERPRETED,
        playbook=book(PB_STRATEGY, mark("strategy: {batches: [true], on_failure: halt}")),
        words=(("True", "true"),),
    ),
    bad(
        "batches [1.5]",
        Kind.REINTERPRETED,
        playbook=book(PB_STRATEGY, mark("strategy: {batches: [1.5], on_failure: halt}")),
        words=("1.5",),
    ),
    bad(
        "stabilize successes true",
        Kind.REINTERPRETED,
        playbook=book(PB_STABILIZE, mark("stabilize: {interval: 2s, successes: true, timeout: 2m}")),
        words=("successes",),
    ),
    bad(
        "http status true",
        Kind.REINTERPRETED,
        playbook=http(f"url: {q('http://' + HEALTH)}, status: true"),
        words=("status",),
    ),
    bad(
        "tcp port true",
        Kind.REINTERPRETED,
        playbook=book(PB_TCP, mark("  - tcp: {port: true}")),
        words=("port",),
    ),
    bad(
        "ssh port true",
        Kind.REINTERPRETED,
        inventory=inv(
            INV_SSH,
            mark("    ssh: {user: root, port: true, key: keys/id_ed25519, known_hosts: keys/known_hosts}"),
        ),
        words=("port",),
    ),
    bad(
        "snapshot enabled 'yes'",
        Kind.REINTERPRETED,
        playbook=book(PB_SNAPSHOT, mark('snapshot: {enabled: "yes", memory: true, retention: keep}')),
        words=("enabled",),
    ),
    bad(
        "snapshot memory 'off'",
        Kind.REINTERPRETED,
        playbook=book(PB_SNAPSHOT, mark('snapshot: {enabled: true, memory: "off", retention: keep}')),
        words=("memory",),
    ),
    bad(
        "approve_after [true]",
        Kind.REINTERPRETED,
        playbook=strategy("approve_after: [true]"),
        words=("approve_after",),
    ),
    bad(
        "failure_budget count true",
        Kind.REINTERPRETED,
        playbook=book(
            PB_STRATEGY,
            mark('strategy: {batches: [1, "50%"], on_failure: continue, failure_budget: {count: true}}'),
        ),
        words=("count",),
    ),
    bad(
        "two hosts with the same lb_server (an explicit one and a default)",
        Kind.REINTERPRETED,
        inventory=host(
            INV_HOST2, "      dxapp02: {address: 10.40.2.12, domain: vm-dxapp02, lb_server: dxapp01}"
        ),
        words=("dxapp01",),
    ),
    bad(
        "two hosts with the same lb_server (the third host)",
        Kind.REINTERPRETED,
        inventory=host(
            INV_HOST3, "      dxapp03: {address: 10.40.2.13, domain: vm-dxapp03, lb_server: dxapp02}"
        ),
        words=("dxapp02",),
    ),
    bad(
        "two hosts with the same domain",
        Kind.REINTERPRETED,
        inventory=host(
            INV_HOST3, "      dxapp03: {address: 10.40.2.13, domain: vm-dxapp01, lb_server: dxapp03}"
        ),
        words=("vm-dxapp01",),
    ),
    bad("--hosts ',,,'", Kind.REINTERPRETED, args=(*PLAN, "--hosts", ",,,"), at="--hosts"),
    bad("--hosts ' '", Kind.REINTERPRETED, args=(*RUN, "--hosts", " "), at="--hosts"),
    bad(
        "--hosts dxapp01,dxapp01",
        Kind.REINTERPRETED,
        args=(*PLAN, "--hosts", "dxapp01,dxapp01"),
        at="--hosts",
        words=("dxapp01",),
    ),
    bad(
        "window opening shorter than one host's expected time (both numbers given)",
        Kind.REINTERPRETED,
        # drain 15m + upload 300s + run 10m + stabilize 2m + 60s = 1980s, in an opening of 300s
        playbook=window('["Sat 01:00-01:05"]', book(PB_DRAIN, "drain: {timeout: 15m}")),
        words=(("5m", "5 min", "300s", "300 s", "0:05:00"), ("33m", "33 min", "1980s", "1980 s", "0:33:00")),
    ),
    bad(
        "window whose longest opening is shorter than one host's expected time",
        Kind.REINTERPRETED,
        playbook=window('["Sat 01:00-01:20", "Sun 01:00-01:15"]'),
    ),
    bad(
        "windows that overlap (Fri 22:00-Sat 06:00 holds Sat 01:00-05:00)",
        Kind.REINTERPRETED,
        playbook=window('["Mon-Fri 22:00-06:00", "Sat 01:00-05:00"]'),
        words=("overlap",),
    ),
    bad(
        "windows that overlap (daily and Sunday)",
        Kind.REINTERPRETED,
        playbook=window('["daily 01:00-05:00", "Sun 03:00-06:00"]'),
        words=("overlap",),
    ),
]


# -- 9. the libvirt URI

KVM = "root@kvm-nord-01/system"

LIBVIRT = [
    bad("qemu+ssh", Kind.LIBVIRT, inventory=libvirt(f"qemu+ssh://{KVM}"), words=("qemu+ssh",)),
    bad(
        "qemu+ext",
        Kind.LIBVIRT,
        inventory=libvirt("qemu+ext:///system?command=/opt/kvm/connect"),
        words=("qemu+ext",),
    ),
    bad("qemu+tcp", Kind.LIBVIRT, inventory=libvirt("qemu+tcp://kvm-nord-01/system"), words=("qemu+tcp",)),
    bad("xen", Kind.LIBVIRT, inventory=libvirt("xen:///system"), words=("xen",)),
    bad(
        "qemu+libssh2 with no_verify=1",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}?no_verify=1", known_hosts="keys/known_hosts"),
        words=("no_verify",),
    ),
    bad(
        "qemu+tls with no_verify=1",
        Kind.LIBVIRT,
        inventory=libvirt("qemu+tls://kvm-nord-01/system?no_verify=1"),
        words=("no_verify",),
    ),
    bad(
        "qemu+libssh2 with known_hosts_verify=ignore",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}?known_hosts_verify=ignore", known_hosts="keys/known_hosts"),
        words=("known_hosts_verify",),
    ),
    bad(
        "qemu+libssh with known_hosts_verify=auto",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh://{KVM}?known_hosts_verify=auto", known_hosts="keys/known_hosts"),
        words=("known_hosts_verify",),
    ),
    bad(
        "qemu+libssh2 with command=/bin/sh",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}?command=/bin/sh", known_hosts="keys/known_hosts"),
        words=("command",),
    ),
    bad(
        "qemu+libssh2 with netcat=",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}?netcat=/usr/bin/nc", known_hosts="keys/known_hosts"),
        words=("netcat",),
    ),
    bad(
        "an unknown URI parameter",
        Kind.LIBVIRT,
        inventory=libvirt("qemu:///system?hospital=chu-nord"),
        words=("hospital",),
    ),
    bad("a URI with a newline", Kind.LIBVIRT, inventory=libvirt("qemu:///system\nqemu+ext:///system")),
    bad("a URI with a space", Kind.LIBVIRT, inventory=libvirt("qemu:///system ?socket=/tmp/x")),
    bad(
        "qemu+libssh2 without any known_hosts",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}")
        .replace(INV_SSH, "    ssh: {user: root, key: keys/id_ed25519}")
        .replace("domain: vm-dxapp0", "ssh: {known_hosts: keys/known_hosts}, domain: vm-dxapp0"),
        words=("known_hosts",),
    ),
    bad(
        "hypervisor.known_hosts that does not exist",
        Kind.LIBVIRT,
        inventory=libvirt(f"qemu+libssh2://{KVM}", known_hosts="keys/kvm_known_hosts", marked="known_hosts"),
        words=("kvm_known_hosts",),
    ),
]


# -- 11. the shipped example, each with one mistake


def _example(name: str) -> str:
    return (EXAMPLES / name).read_text()


EX_BOOK = "examples/dxcare-2026.12.yaml"
EX_INV = "examples/inventory.yaml"
EX_ARGS = ("validate", EX_BOOK, "-i", EX_INV)


def example_line(text: str, contains: str, new: str) -> str:
    """``text`` with its one line containing ``contains`` replaced by ``new`` (marked)."""
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if contains in line]
    assert len(found) == 1, f"the example has {len(found)} lines with {contains!r}"
    lines[found[0]] = mark(new) + "\n"
    return "".join(lines)


def example(id: str, *, playbook: str | None = None, inventory: str | None = None, words: Words = ()) -> Case:
    files = {
        EX_BOOK: playbook if playbook is not None else _example("dxcare-2026.12.yaml"),
        EX_INV: inventory if inventory is not None else _example("inventory.yaml"),
        "examples/releases/dxcare-2026.12.tar.gz": "placeholder artifact\n",
        "examples/keys/id_ed25519": _example("keys/id_ed25519"),
        "examples/keys/known_hosts": _example("keys/known_hosts"),
    }
    return bad(id, Kind.EXAMPLES, files=files, args=EX_ARGS, words=words)


EX_PLAYBOOK = _example("dxcare-2026.12.yaml")
EX_INVENTORY = _example("inventory.yaml")

EXAMPLE_CASES = [
    example(
        "example: the install step quotes its template",
        playbook=example_line(
            EX_PLAYBOOK,
            "--site {{ vars.site }}",
            '  - run: "{{ vars.app_dir }}/bin/install --archive /var/tmp/dxcare-{{ vars.version }}.tar.gz'
            " --site '{{ vars.site }}'\"",
        ),
        words=("vars.site",),
    ),
    example(
        "example: a misspelt secret",
        playbook=example_line(
            EX_PLAYBOOK,
            "migrate-config",
            '  - run: "{{ vars.app_dir }}/bin/dxcarectl migrate-config'
            ' --db-password {{ secrets.dxcare_db_pasword }}"',
        ),
        inventory=EX_INVENTORY,  # the shipped example declares dxcare_db_password
        words=("dxcare_db_pasword",),
    ),
    example(
        "example: a backend name with a space",
        inventory=example_line(
            EX_INVENTORY,
            "backend: dxcare_app,",
            "    loadbalancer: {type: haproxy, socket: /run/haproxy/admin.sock,"
            ' backend: "dxcare app", timeout: 5s}',
        ),
        words=("dxcare app",),
    ),
    example(
        "example: two VMs behind the same lb_server",
        inventory=example_line(
            EX_INVENTORY,
            "dxapp04:",
            "      dxapp04: {address: 10.40.2.14, domain: vm-dxapp04, lb_server: dxapp03,"
            " vars: {room: salle-b}}",
        ),
        words=("dxapp03",),
    ),
    example(
        "example: a window too short for one VM (15m drain, 29m of steps)",
        # 900s drain + 1740s of steps + 120s stabilize + 60s = 2820s, in an opening of 1200s
        playbook=EX_PLAYBOOK + mark('window: {timezone: Europe/Paris, allowed: ["Sat 01:00-01:20"]}') + "\n",
        words=(
            ("20m", "20 min", "1200s", "1200 s", "0:20:00"),
            ("47m", "47 min", "2820s", "2820 s", "0:47:00"),
        ),
    ),
    example(
        "example: the login check lost its scheme",
        playbook=example_line(
            EX_PLAYBOOK,
            "/login",
            '  - http: {url: "{{ host.address }}:{{ vars.app_port }}/login",'
            ' status: 200, contains: "DxCare"}',
        ),
        words=("url",),
    ),
    example(
        "example: the version check's expected value uses an undefined var",
        playbook=example_line(
            EX_PLAYBOOK,
            '/health", status: 200, json:',
            '  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health",'
            ' json: {version: "{{ vars.relase }}"}}',
        ),
        words=("relase",),
    ),
    example(
        "example: a host's domain with a space",
        inventory=example_line(
            EX_INVENTORY,
            "dxapp05:",
            '      dxapp05: {address: 10.40.2.15, domain: "vm dxapp05", lb_server: dxapp05}',
        ),
        words=("domain",),
    ),
    example(
        "example: the report servers' snapshot command quotes its template",
        playbook=EX_PLAYBOOK.replace("pool: dxcare-app", "pool: dxcare-reports"),
        inventory=example_line(
            EX_INVENTORY, "create: ", "      create: \"zfs snapshot 'tank/dxcare@{{ snapshot }}'\""
        ),
        words=("snapshot",),
    ),
]


# -- 12. command-line arguments

ROLLOUT = "ROLLOUT"

ARGS = [
    bad(
        "run --hosts with an unknown host",
        Kind.ARGS,
        args=(*RUN, "--hosts", "dxapp01,dxapp07"),
        at="--hosts",
        words=("dxapp07",),
    ),
    bad(
        "schedule --hosts with an unknown host",
        Kind.ARGS,
        args=(*SCHEDULE, "--at", LATER, "--hosts", "dxapp9"),
        at="--hosts",
        words=("dxapp9",),
    ),
    bad(
        "schedule --at in the past",
        Kind.ARGS,
        args=(*SCHEDULE, "--at", "2020-03-01 01:30"),
        at="--at",
        words=("past",),
    ),
    bad("schedule with neither --at nor --next-window", Kind.ARGS, args=SCHEDULE, at="--at"),
    bad(
        "schedule --next-window without a window",
        Kind.ARGS,
        args=(*SCHEDULE, "--next-window"),
        at="playbook.yaml",
        words=("window",),
    ),
    bad("status ../../etc", Kind.ARGS, args=("status", "../../etc"), at=ROLLOUT),
    bad("status of a 10 KB id", Kind.ARGS, args=("status", "2026" + "a" * 10240), at=ROLLOUT),
    bad(
        "status of an id with a newline",
        Kind.ARGS,
        args=("status", "20261205-013000-beef\nrm -rf /"),
        at=ROLLOUT,
    ),
    bad(
        "status of an unknown rollout",
        Kind.ARGS,
        args=("status", "20261205-013000-beef"),
        at=ROLLOUT,
        words=("20261205-013000-beef",),
    ),
    bad("resume ../../etc", Kind.ARGS, args=("resume", "../../etc"), at=ROLLOUT),
    bad("history --limit 0", Kind.ARGS, args=("history", "--limit", "0"), at="--limit"),
    bad("history --limit abc", Kind.ARGS, args=("history", "--limit", "abc"), at="--limit", words=("abc",)),
    bad("unschedule abc", Kind.ARGS, args=("unschedule", "abc"), at="ID", words=("abc",)),
]


BAD = (
    QUOTING
    + NAMES
    + SECRETS
    + YAML
    + TRACEBACK
    + UNION
    + LATE
    + REINTERPRETED
    + LIBVIRT
    + EXAMPLE_CASES
    + ARGS
)


# -- borderline inputs that must validate

HOSTILE_VARS = inv(INV_VARS, f"vars: {{site: chu-nord, env: prod, motd: {q(HOSTILE)}}}")
DOTTED = (
    DX_INVENTORY.replace("  dxcare-app:", "  dxcare-app.chu_nord:")
    .replace(INV_HOST1, "      dxapp01.chu-nord.local: {address: 10.40.2.11, domain: vm-dxapp01.prod+2026}")
    .replace(INV_HOST2, "      dxapp02.chu-nord.local: {address: 10.40.2.12, lb_server: dxapp02.chu-nord}")
)

GOOD = [
    good("the base playbook and inventory"),
    good(
        "hostile var in an unquoted word (run)",
        playbook=step("echo {{ vars.motd }} > /etc/motd"),
        inventory=HOSTILE_VARS,
    ),
    good(
        "hostile var in an unquoted word (command check)",
        playbook=check_cmd("grep -c {{ vars.motd }} /etc/motd"),
        inventory=HOSTILE_VARS,
    ),
    good("template inside $(...)", playbook=step("cd $(dirname {{ vars.app_dir }}) && ls")),
    good("--opt={{ x }}", playbook=step("{{ vars.app_dir }}/bin/install --site={{ vars.site }}")),
    good(
        "VAR={{ x }} before a command",
        playbook=step("DXCARE_SITE={{ vars.site }} {{ vars.app_dir }}/bin/install"),
    ),
    good("$HOME/{{ x }}", playbook=step("cp /var/tmp/dxcare-2026.12.tar.gz $HOME/{{ vars.site }}.tar.gz")),
    good(
        "quotes elsewhere in the command",
        playbook=step("{{ vars.app_dir }}/bin/notify 'update in progress' --site {{ vars.site }}"),
    ),
    good(
        "'#' inside a word is no comment",
        playbook=step("{{ vars.app_dir }}/bin/install --tag build#7 {{ vars.site }}"),
    ),
    good(
        "pipes and redirections",
        playbook=check_cmd("{{ vars.app_dir }}/bin/dxcarectl status 2>&1 | grep -q running"),
    ),
    good(
        "{{ x | raw }} inside quotes",
        playbook=step("{{ vars.app_dir }}/bin/install --flags '{{ vars.site | raw }}'"),
    ),
    good("{{ x | raw }} as the script of sh -c", playbook=step("sh -c {{ vars.service | raw }}")),
    good(
        "unquoted templates in the snapshot commands and session probes",
        playbook=sessions(probe="who | grep -c {{ vars.service }}", marked="probe"),
        inventory=snapshots(),
    ),
    good(
        "a secret in a run step (validate never reads it)", playbook=step(DB_STEP), inventory=WITH_DB_PASSWORD
    ),
    good(
        "a secret in a header",
        playbook=book_secrets(
            "  api_token: {env: DXCARE_API_TOKEN}",
            http(f"url: {q('http://' + HEALTH)}, headers: {{X-Api-Token: {q('{{ secrets.api_token }}')}}}"),
        ),
    ),
    good(
        "a secret after 'Bearer ' in an Authorization header",
        playbook=http(
            f"url: {q('http://' + HEALTH)}, headers: {{Authorization: {q('Bearer {{ secrets.api_token }}')}}}"
        ),
        inventory=inv_secrets(API_TOKEN),
    ),
    good(
        "user:{{ secrets.pw }}@ in a check url",
        playbook=http('url: "http://monitor:{{ secrets.health_pw }}@{{ host.address }}:8080/health"').replace(
            MARK, ""
        ),
        inventory=pool_secrets("      health_pw: {file: secrets/health-pw}"),
        files={"secrets/health-pw": "S3cret-health-pw\n"},
    ),
    good("version: 2026.10 as a var (a number)", playbook=book(PB_VARS, "vars: {version: 2026.10}")),
    good(
        "names with dots, dashes and a plus",
        playbook=book(PB_POOL, "pool: dxcare-app.chu_nord"),
        inventory=DOTTED,
    ),
    good(
        "backend names with ':' and '.'", inventory=inv(INV_LB, INV_LB.replace("dxcare_app", "dxcare:app.v2"))
    ),
    good(
        "haproxy address as name:port",
        inventory=inv(
            INV_LB, '    loadbalancer: {address: "haproxy01.chu-nord.local:9999", backend: dxcare_app}'
        ),
    ),
    good(
        "a window with openings long enough",
        playbook=window('["Sat 01:00-05:00", "Sun 01:00-05:00"]'),
    ),
    good(
        "a window opening exactly one host's expected time (23 minutes)",
        playbook=window('["Sat 01:00-01:23"]'),
    ),
    good(
        "stabilize interval 0",
        playbook=book(PB_STABILIZE, "stabilize: {interval: 0, successes: 3, timeout: 2m}"),
    ),
    good(
        "a timeout of exactly 30 days",
        playbook=strategy("capacity_timeout: 720h"),
    ),
    good(
        "max_unavailable 1 and min_healthy 50%",
        playbook=strategy('max_unavailable: 1, min_healthy: "50%"'),
    ),
    good(
        "json expected value with a template",
        playbook=http(f"url: {q('http://' + HEALTH)}, json: {{version: {q('{{ vars.version }}')}}}").replace(
            MARK, ""
        ),
    ),
    good(
        "qemu+libssh2 with hypervisor.known_hosts and sshauth",
        inventory=libvirt(f"qemu+libssh2://{KVM}?sshauth=privkey", known_hosts="keys/known_hosts", marked=""),
    ),
    good(
        "qemu+unix with its socket",
        inventory=libvirt("qemu+unix:///system?socket=/run/libvirt/libvirt-sock", marked=""),
    ),
    good("test:///default", inventory=libvirt("test:///default", marked="")),
    good(
        "Rich markup in the playbook's path is printed as it is",
        files={"[bold]dxcare.yaml": DX_PLAYBOOK},
        args=("validate", "[bold]dxcare.yaml", "-i", "inventory.yaml"),
        words=("[bold]dxcare.yaml",),
    ),
    good(
        "a Rich closing tag in the playbook's path",
        # the path is the folder "dxcare[" and the file "x].yaml": the upload source goes in that folder
        files={"dxcare[/x].yaml": DX_PLAYBOOK, "dxcare[/dxcare-2026.12.tar.gz": "placeholder artifact\n"},
        args=("validate", "dxcare[/x].yaml", "-i", "inventory.yaml"),
        words=("dxcare[/x].yaml",),
    ),
]


# -- running a case

SCHEMA_NAMES = (
    "RunStep",
    "UploadStep",
    "HttpCheck",
    "TcpCheck",
    "CommandCheck",
    "HAProxyConfig",
    "LibvirtConfig",
    "CommandSnapshotConfig",
    "NoSnapshots",
    "SSHConfig",
    "FailureBudget",
    "WindowSpec",
    "function-after",
    "function-before",
    "function-wrap",
    "tagged-union",
    "errors.pydantic.dev",
)
RICH_TAG = re.compile(
    r"\[/?(?:bold|italic|underline|strike|blink|reverse|dim|red|green|yellow|blue|magenta|cyan|white|black"
    r"|b|i|u|s|link)\b[^\]\n]*\]|\[/\]"
)


class Hang(BaseException):
    """Raised in the main thread by SIGALRM: a case took far longer than a bad input may."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Stop what runs in this thread after ``seconds``, then give pytest-timeout its alarm back."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    remaining, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, max(remaining - (time.monotonic() - started), 0.01))


def prepare(case: Case, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Write the case's files in ``folder``, set its environment; returns the cleanup."""
    for name in list(os.environ):
        if name.startswith(("ORCH_", "DXCARE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORCH_HOME", str(folder / "home"))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace(TMP, str(folder)))
    texts = {name: text.replace(TMP, str(folder)) for name, text in case.files.items()}
    write_inputs(folder, playbook=texts.pop("playbook.yaml"), inventory=texts.pop("inventory.yaml"))
    (folder / "dxcare-2026.12.tar.gz").write_bytes(b"placeholder artifact")
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return case.setup(folder) if case.setup else lambda: None


def in_child(args: tuple[str, ...], folder: Path) -> tuple[int, str, str]:
    """The console script with 1 GiB of address space: an unbounded read ends in MemoryError, not in the
    machine's memory."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "DXCARE_"))}
    env |= {"ORCH_HOME": str(folder / "home"), "NO_COLOR": "1", "COLUMNS": "200"}
    try:
        done = subprocess.run(
            [str(ORCHESTRATOR), *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hang: no answer within 20 s")
    return done.returncode, done.stdout, done.stderr


def answer(case: Case, call: Invoke, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    cleanup = prepare(case, folder, monkeypatch)
    args = tuple(a.replace(TMP, str(folder)) for a in case.args)
    try:
        if case.isolated:
            return in_child(args, folder)
        with deadline(HANG_AFTER):
            return call(*args)
    except Hang:
        pytest.fail(f"hang: no answer within {HANG_AFTER:g} s")
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if case.secret and case.secret in message:
            pytest.fail(
                f"leak: the secret is in a traceback: {message.replace(case.secret, '<SECRET>')[:300]}"
            )
        pytest.fail(f"traceback: {message[:300]}")
    finally:
        cleanup()


def short(text: str) -> str:
    return text if len(text) <= 400 else text[:400] + f"... ({len(text)} characters)"


def problem(case: Case, result: tuple[int, str, str]) -> str | None:
    """What is wrong with the CLI's answer to a bad input, starting with the kind of failure; None if
    it is one line, exit 2, naming the right place."""
    code, out, err = result
    if case.secret and case.secret in out + err:
        return f"leak: the secret {case.secret!r} was printed: {short((err or out).strip())!r}"
    if "Traceback" in err:
        return f"traceback: {short(err.strip().splitlines()[-1])}"
    if code == 0:
        return f"passes: exit 0; stdout {short(out.strip())!r}"
    if code != 2:
        return f"exit code {code}: {short(err.strip() or out.strip())!r}"
    lines = err.splitlines()
    if out or len(lines) != 1:
        return f"lines: stdout {short(out)!r}, stderr {len(lines)} lines {short(err)!r}"
    line, where = lines[0], case.where()
    if not line.startswith(f"error: {where}: "):
        return f"wrong location: expected 'error: {where}: ...', got {short(line)!r}"
    if "; " not in line[len(f"error: {where}: ") :]:
        return f"wording: no '; ' between what is wrong and what was expected: {short(line)!r}"
    leaked = [name for name in SCHEMA_NAMES if name in line]
    if leaked:
        return f"leak: schema names {leaked} in {short(line)!r}"
    inputs = " ".join([*case.files.values(), *case.args])
    tags = [tag for tag in RICH_TAG.findall(line) if tag not in inputs]
    if tags:
        return f"leak: Rich markup {tags} in {short(line)!r}"
    for word in case.words:
        choices = word if isinstance(word, tuple) else (word,)
        if not any(choice in line for choice in choices):
            return f"wording: none of {choices} in {short(line)!r}"
    return None


@pytest.mark.parametrize("case", BAD, ids=[f"{c.kind:02d} {c.id}" for c in BAD])
def test_a_bad_input_is_one_line_exit_2(
    case: Case, call: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = answer(case, call, tmp_path, monkeypatch)
    failure = problem(case, result)
    assert failure is None, failure


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_a_borderline_good_input_validates(
    case: Case, call: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = answer(case, call, tmp_path, monkeypatch)
    assert (code, err) == (0, ""), f"refused: exit {code}: {short(err.strip() or out.strip())!r}"
    assert out.startswith("ok: "), out
    for word in case.words:
        choices = word if isinstance(word, tuple) else (word,)
        assert any(choice in out for choice in choices), f"none of {choices} in {out!r}"


def test_counts_by_class() -> None:
    counts = Counter(case.kind for case in BAD)
    for kind in Kind:
        print(f"{kind.value:2d} {kind.name.lower():14s} {counts[kind]:4d}")
    print(f"   bad: {len(BAD)}, good: {len(GOOD)}")
    assert len(BAD) >= 170
    assert all(counts[kind] >= (4 if kind is Kind.ARGS else 8) for kind in Kind), counts
    assert len(GOOD) >= 20
    ids = [case.id for case in BAD + GOOD]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert MARK not in DX_PLAYBOOK + DX_INVENTORY
    for case in BAD:
        case.where()  # one marked file, or a location given
    assert not any(MARK in text for case in GOOD for text in case.files.values())


def test_the_examples_copy_validates(call: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class 11 cases are the shipped example with one mistake: unedited, it validates."""
    case = example("unedited")
    code, out, err = answer(case, call, tmp_path, monkeypatch)
    assert (code, err) == (0, ""), err
    assert out.startswith("ok: ")


def test_an_unreachable_store_is_one_line_exit_3_with_its_password_hidden(call: Invoke) -> None:
    """A store that does not answer is an outage, not a mistake in the input: exit 3 (try again), one
    line naming the setting, the password masked (the bad-input table holds the exit-2 store cases)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STORE_URL, "postgresql://dxcare:secretpw@127.0.0.1:1/orchestrator")
        code, out, err = call("status")
    assert code == 3 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"error: {STORE_URL}: ") and "Traceback" not in err
    assert "***" in err and "secretpw" not in err and "does not answer" in err
