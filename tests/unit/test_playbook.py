"""The playbook: schema defaults, and every mistake in it reported as ONE InputError at its line.

Each bad case is the good playbook with one line changed; the ``# <-`` marker sits on the line the
error must name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.mark import ParameterSet

from orchestrator.app.submit import load_spec
from orchestrator.errors import InputError
from orchestrator.model.playbook import HttpCheck, Playbook, RunStep, TcpCheck, UploadStep, load_playbook
from tests.unit.fakes import GOOD_PLAYBOOK, marked_line, write_inputs


def edit(old: str, new: str) -> str:
    assert GOOD_PLAYBOOK.count(old) == 1, old
    return GOOD_PLAYBOOK.replace(old, new)


UNION_NOISE = (
    "a step/check is validated against every kind, and the first error reported is from the first kind "
    "tried (RunStep / HttpCheck), e.g. \"missing required field 'run'\" for an upload step; a callable "
    "pydantic Discriminator on the kind key would report the real error"
)


def case(name: str, playbook: str, problem: str, fix: str, *, xfail: str = "") -> ParameterSet:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(playbook, problem, fix, id=name, marks=marks)


STABILIZE = "stabilize: {interval: 1s, successes: 3, timeout: 30s}"
INSTALL = '  - run: "{{ vars.app_dir }}/bin/install /tmp/app-2.tar.gz"'
UPLOAD = '  - upload: {src: app-2.tar.gz, dest: /tmp/app-2.tar.gz, mode: "0644"}'
UPDATE = f"update:\n{UPLOAD}\n{INSTALL}\n    timeout: 60s\n"
HTTP = '  - http: {url: "http://{{ host.address }}:{{ vars.app_port }}/health", json: {version: "2"}}'
BATCHES = 'strategy: {batches: [1, "50%"], on_failure: halt}'


def batches(sizes: str) -> str:
    return edit(BATCHES, f"strategy: {{batches: {sizes}, on_failure: halt}}  # <-")


BAD = [
    case(
        "typo in a field",
        edit("drain: {timeout: 30s}", "drain: {timeuot: 30s}  # <-"),
        "unknown field 'timeuot'",
        "check its spelling",
    ),
    case(
        "typo at top level",
        edit(STABILIZE, STABILIZE.replace("stabilize", "stabilise") + "  # <-"),
        "unknown field 'stabilise'",
        "check its spelling",
    ),
    case(
        "typo in a flow step",
        edit(UPLOAD, UPLOAD.replace("mode:", "mdoe:") + "  # <-"),
        "unknown field 'mdoe'",
        "spelling",
    ),
    case(
        "typo in a block step",
        edit("    timeout: 60s", "    timout: 60s  # <-"),
        "unknown field 'timout'",
        "spelling",
    ),
    case(
        "missing required field",
        edit("name: web-v2\npool: web\n", "name: web-v2  # <-\n"),
        "missing required field 'pool'",
        "add it",
    ),
    case(
        "missing update",
        edit(UPDATE, "").replace("name: web-v2", "name: web-v2  # <-"),
        "missing required field 'update'",
        "add it",
    ),
    case(
        "missing field in a check",
        edit(HTTP, "  - http: {status: 200}  # <-"),
        "missing required field 'url'",
        "add it",
    ),
    case(
        "wrong type: int",
        edit(STABILIZE, STABILIZE.replace("3", "three") + "  # <-"),
        "stabilize.successes: invalid value 'three'",
        "valid integer",
    ),
    case(
        "wrong type: duration",
        edit("drain: {timeout: 30s}", "drain: {timeout: 30 minutes}  # <-"),
        "drain.timeout: '30 minutes' is not a duration",
        "'15m'",
    ),
    case(
        "wrong type: mapping",
        edit('vars: {version: "2"}', "vars: [version, 2]  # <-"),
        "vars: invalid value ['version', 2]",
        "valid dictionary",
    ),
    case(
        "wrong type: list",
        edit(f"checks:\n{HTTP}\n  - tcp: {{port: 22}}\n", "checks: none  # <-\n"),
        "checks: invalid value 'none'",
        "valid list",
    ),
    case("batch size 0", batches("[0]"), "batch size 0 is below 1", "a number >= 1 or a percentage"),
    case("batch size 150%", batches('[1, "150%"]'), "batch size '150%' is not valid", "'1%'..'100%'"),
    case(
        "batch size abc", batches('["abc"]'), "batch size 'abc' is not valid", "a number >= 1 or a percentage"
    ),
    case("batch sizes []", batches("[]"), "batches is empty", "[1, 2, '50%']"),
    case(
        "on_failure unknown",
        edit("on_failure: halt}", "on_failure: panic}  # <-"),
        "strategy.on_failure: invalid value 'panic'",
        "'halt'",
    ),
    case(
        "retention unknown",
        edit("retention: delete_on_success}", "retention: forever}  # <-"),
        "snapshot.retention: invalid value 'forever'",
        "'delete_on_success' or 'keep'",
    ),
    case(
        "unknown check kind",
        edit("  - tcp: {port: 22}", "  - grpc: {port: 22}  # <-"),
        "unknown check kind (keys: grpc)",
        "one of: http, tcp, command",
    ),
    case(
        "unknown step kind",
        edit(INSTALL, INSTALL.replace("run:", "shell:") + "  # <-"),
        "unknown step kind (keys: shell, timeout)",
        "one of: run, upload",
    ),
    case(
        "a step that is not a mapping",
        edit("    timeout: 60s\n", "    timeout: 60s\n  - reboot  # <-\n"),
        "unknown step kind ('reboot')",
        "one of: run, upload",
    ),
    case(
        "stabilize unreachable",
        edit(STABILIZE, "stabilize: {interval: 10s, successes: 5, timeout: 30s}  # <-"),
        "5 successes 10s apart need 40s, more than the timeout 30s",
        "raise the timeout",
    ),
    case("unknown pool", edit("pool: web", "pool: wbe  # <-"), "pool 'wbe' is not in", "one of: web"),
    case(
        "upload source missing",
        edit(
            UPLOAD,
            "  - upload:\n      dest: /tmp/app-2.tar.gz\n      src: app-3.tar.gz  # <-\n      mode: '0644'",
        ),
        "app-3.tar.gz does not exist",
        "relative paths count from the playbook's folder",
    ),
    case(
        "undefined variable in a run step",
        edit(INSTALL, INSTALL.replace("app_dir", "app_dri") + "  # <-"),
        "template '{{ vars.app_dri }}/bin/install /tmp/app-2.tar.gz' uses an undefined name",
        "under `vars`",
    ),
    case(
        "undefined variable in a check",
        edit(HTTP, HTTP.replace("vars.app_port", "vars.port") + "  # <-"),
        "uses an undefined name ('dict object' has no attribute 'port')",
        "spelling",
    ),
    case(
        "undefined variable in the upload dest",
        edit(UPLOAD, UPLOAD.replace("dest: /tmp/app-2.tar.gz", "dest: '{{ dest }}'") + "  # <-"),
        "template '{{ dest }}' uses an undefined name",
        "under `vars`",
    ),
    case(
        "undefined variable in the snapshot name",
        edit("retention: delete_on_success}", "name: 'orch-{{ rollout.idd }}'}  # <-"),
        "template 'orch-{{ rollout.idd }}' uses an undefined name",
        "spelling",
    ),
    case(
        "template syntax error",
        edit(INSTALL, INSTALL.replace("app_dir }}", "app_dir }") + "  # <-"),
        "template syntax error in",
        "valid Jinja2",
    ),
    case("duplicate key", GOOD_PLAYBOOK + "pool: other  # <-\n", "duplicate key 'pool'", "each key once"),
    case("YAML syntax error", edit("pool: web", "pool: web: db  # <-"), "YAML syntax error", "valid YAML"),
    case(
        "bad mode in an upload step",
        edit(UPLOAD, UPLOAD.replace('"0644"', '"rw-r--r--"') + "  # <-"),
        "mode 'rw-r--r--' is not octal",
        "'0644'",
    ),
    case(
        "typo in a tcp check",
        edit("  - tcp: {port: 22}", "  - tcp: {prot: 22}  # <-"),
        "unknown field 'prot'",
        "spelling",
        xfail=UNION_NOISE,
    ),
    case(
        "upload without dest",
        edit(UPLOAD, UPLOAD.replace(" dest: /tmp/app-2.tar.gz,", "") + "  # <-"),
        "missing required field 'dest'",
        "add it",
    ),
]


@pytest.mark.parametrize(("playbook", "problem", "fix"), BAD)
def test_a_bad_playbook_gives_one_error_at_its_line(
    tmp_path: Path, playbook: str, problem: str, fix: str
) -> None:
    book, inventory = write_inputs(tmp_path, playbook=playbook)
    with pytest.raises(InputError) as raised:
        load_spec(book, inventory)
    error = raised.value
    assert str(error).startswith(f"{book}:{marked_line(playbook)}: "), str(error)
    assert problem in error.problem, str(error)
    assert fix in error.expected, str(error)
    assert "\n" not in str(error)


def test_the_good_playbook_resolves(tmp_path: Path) -> None:
    book, inventory = write_inputs(tmp_path)
    spec = load_spec(book, inventory, rollout_id="R7")
    assert spec.name == "web-v2" and spec.pool == "web"
    assert spec.batches == [["web1"], ["web2", "web3"]]
    assert (spec.drain_timeout, spec.drain_on_timeout) == (30.0, "fail")
    assert (spec.stabilize_interval, spec.stabilize_successes, spec.stabilize_timeout) == (1.0, 3, 30.0)
    assert {h.snapshot_name for h in spec.hosts.values()} == {"orch-R7"}
    web1 = spec.hosts["web1"]
    upload, run = web1.steps
    assert (upload.kind, upload.src, upload.dest, upload.mode) == (
        "upload",
        tmp_path / "app-2.tar.gz",
        "/tmp/app-2.tar.gz",
        0o644,
    )
    assert (run.kind, run.command, run.timeout) == ("run", "/opt/app/bin/install /tmp/app-2.tar.gz", 60.0)
    http, tcp = web1.checks
    assert (http.url, http.json_fields) == ("http://10.0.0.11:8080/health", {"version": "2"})
    assert (tcp.address, tcp.port) == ("10.0.0.11", 22)
    # the old version is not expected to report version 2
    assert [c.json_fields for c in web1.revert_checks] == [None, None]


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\npool: web\nupdate: [{run: 'true'}]\nchecks: [{tcp: {port: 22}}]\n")
    book, _ = load_playbook(path)
    assert book.strategy.batches == [1] and book.strategy.on_failure == "halt"
    assert (book.drain.timeout, book.drain.on_timeout) == (60.0, "fail")
    assert (book.snapshot.enabled, book.snapshot.memory, book.snapshot.retention) == (
        True,
        True,
        "delete_on_success",
    )
    assert book.snapshot.name == "orch-{{ rollout.id }}"
    assert (book.stabilize.interval, book.stabilize.successes, book.stabilize.timeout) == (1.0, 3, 120.0)
    assert isinstance(book.update[0], RunStep) and book.update[0].timeout == 300.0
    check = book.checks[0]
    assert isinstance(check, TcpCheck) and check.tcp.address == "{{ host.address }}"


def test_every_duration_field_takes_units(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: x\npool: web\ndrain: {timeout: 15m}\n"
        "update: [{run: 'true', timeout: 1h}, {upload: {src: a, dest: /b}, timeout: 90}]\n"
        "checks: [{http: {url: 'http://x/', timeout: 500ms}}, {tcp: {port: 1, timeout: 2s}},"
        " {command: {run: 'true', timeout: 3}}]\n"
        "stabilize: {interval: 250ms, successes: 2, timeout: 1m}\n"
    )
    book, _ = load_playbook(path)
    assert book.drain.timeout == 900.0
    assert [s.timeout for s in book.update] == [3600.0, 90.0]
    assert isinstance(book.update[1], UploadStep)
    timeouts = [
        getattr(c, kind).timeout for c, kind in zip(book.checks, ("http", "tcp", "command"), strict=True)
    ]
    assert timeouts == [0.5, 2.0, 3.0]
    assert (book.stabilize.interval, book.stabilize.timeout) == (0.25, 60.0)


def test_stabilize_just_reachable_is_accepted(tmp_path: Path) -> None:
    # 3 successes 10 s apart: probes at 0, 10 and 20 s fit a 20 s timeout
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: x\npool: web\nupdate: [{run: 'true'}]\nchecks: [{tcp: {port: 22}}]\n"
        "stabilize: {interval: 10s, successes: 3, timeout: 20s}\n"
    )
    assert load_playbook(path)[0].stabilize.timeout == 20.0


def _http(**extra: object) -> HttpCheck:
    return HttpCheck.model_validate({"http": {"url": "http://x/health", **extra}})


def test_old_version_checks_drop_what_pins_the_new_version() -> None:
    book = Playbook.model_validate(
        {
            "name": "x",
            "pool": "web",
            "update": [{"run": "true"}],
            "checks": [
                {
                    "http": {
                        "url": "http://x/health",
                        "json": {"version": "2"},
                        "contains": "v2",
                        "status": 200,
                    }
                },
                {"tcp": {"port": 22}},
            ],
        }
    )
    http, tcp = book.old_version_checks()
    assert isinstance(http, HttpCheck) and isinstance(tcp, TcpCheck)
    assert (http.http.json_fields, http.http.contains, http.http.status) == (None, None, 200)
    assert http.http.url == "http://x/health"
    first = book.checks[0]
    assert isinstance(first, HttpCheck) and first.http.json_fields == {"version": "2"}  # unchanged


def test_explicit_revert_checks_are_used_as_given() -> None:
    book = Playbook.model_validate(
        {
            "name": "x",
            "pool": "web",
            "update": [{"run": "true"}],
            "checks": [{"http": {"url": "http://x/health", "json": {"version": "2"}}}],
            "revert_checks": [{"http": {"url": "http://x/health", "json": {"version": "1"}}}],
        }
    )
    (check,) = book.old_version_checks()
    assert isinstance(check, HttpCheck) and check.http.json_fields == {"version": "1"}


def test_unknown_kind_in_revert_checks_is_refused_too(tmp_path: Path) -> None:
    text = GOOD_PLAYBOOK + "revert_checks:\n  - tcp: {port: 22}\n  - smtp: {port: 25}  # <-\n"
    book, inventory = write_inputs(tmp_path, playbook=text)
    with pytest.raises(
        InputError, match=rf"^{book}:{marked_line(text)}: revert_checks.1: unknown check kind"
    ):
        load_spec(book, inventory)
