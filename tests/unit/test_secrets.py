"""Secrets: tokens in specs, values read by the worker, redaction in every sink, display."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from orchestrator import redact
from orchestrator.display import printable
from orchestrator.engine.secrets import SecretValues
from orchestrator.errors import InputError
from orchestrator.model.progress import Progress
from orchestrator.model.secrets import SecretSource, SecretSpec, names_in, shown, token

VALUE = "pa'ss $(rm -rf /) w\"rd"


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


def specs(**sources: SecretSource) -> dict[str, SecretSpec]:
    return {
        n: SecretSpec(name=n, source=s, where=f"inventory.yaml:{i + 3}")
        for i, (n, s) in enumerate(sources.items())
    }


def test_a_token_carries_the_name_never_the_value() -> None:
    text = f"install --password {token('db')} --user admin"
    assert names_in(text) == ["db"]
    assert shown(text) == "install --password *** --user admin"
    assert shown(repr(text)) == "'install --password *** --user admin'"


def test_values_are_put_in_the_form_each_place_needs(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t0ken/with@chars\n")
    values = SecretValues(
        specs(db=SecretSource(env="DB_PW"), api=SecretSource(file=tmp_path / "token")), env={"DB_PW": VALUE}
    )
    command = values.shell(f"install --password {token('db')}")
    assert command == f"install --password {shlex.quote(VALUE)}"
    assert shlex.split(command) == ["install", "--password", VALUE]
    assert values.url(f"http://u:{token('api')}@h/x") == f"http://u:{quote('t0ken/with@chars', safe='')}@h/x"
    assert (
        values.text(f"Bearer {token('api')}") == "Bearer t0ken/with@chars"
    )  # the file's newline is not part
    assert values.shell("no secret here") == "no secret here"


@pytest.mark.parametrize(
    ("source", "env", "message"),
    [
        (SecretSource(env="MISSING"), {}, "environment variable MISSING is not set for this worker"),
        (SecretSource(env="EMPTY"), {"EMPTY": ""}, "is empty"),
        (SecretSource(env="SHORT"), {"SHORT": "abc"}, "shorter than 4 characters"),
        (SecretSource(file=Path("/nonexistent/secret")), {}, "file /nonexistent/secret does not exist"),
        (SecretSource(file=Path("/")), {}, "is not a regular file"),
    ],
)
def test_a_secret_the_worker_cannot_read_is_one_line_naming_its_declaration(
    source: SecretSource, env: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError) as raised:
        SecretValues(specs(db=source), env=env).require()
    assert raised.value.where == "inventory.yaml:3"
    assert message in raised.value.problem


def test_a_file_that_is_too_big_or_not_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00\x01")
    for name, message in (("big", "larger than"), ("bin", "not UTF-8")):
        with pytest.raises(InputError, match=message):
            SecretValues(specs(s=SecretSource(file=tmp_path / name))).require()


def test_every_value_read_is_redacted_in_its_spellings() -> None:
    SecretValues(specs(db=SecretSource(env="DB_PW")), env={"DB_PW": VALUE}).require()
    for form in (VALUE, shlex.quote(VALUE), quote(VALUE, safe=""), VALUE.replace('"', '\\"')):
        assert redact.redact(f"before {form} after") == "before *** after", form
    assert redact.redact("nothing secret") == "nothing secret"


def test_a_multi_line_value_is_redacted_line_by_line() -> None:
    redact.remember("-----BEGIN KEY-----\nAAAAsecretline\n-----END KEY-----")
    assert redact.redact("a stray AAAAsecretline in a log") == "a stray *** in a log"


def test_log_records_are_redacted_however_they_are_made(caplog: pytest.LogCaptureFixture) -> None:
    redact.install_log_redaction()
    redact.remember(VALUE)
    log = logging.getLogger("orchestrator.test")
    with caplog.at_level(logging.DEBUG):
        log.debug("running %s", f"cmd {VALUE}")
        try:
            raise RuntimeError(f"failed with {VALUE}")
        except RuntimeError:
            log.exception("it broke")
    text = caplog.text
    assert VALUE not in text and "running cmd ***" in text and "failed with ***" in text


def test_printable_masks_tokens_and_values_and_escapes_control_characters() -> None:
    redact.remember(VALUE)
    assert printable(f"a {token('x')} b {VALUE} c") == "a *** b *** c"
    assert printable("clear\x1b[2Jscreen") == "clear\\x1b[2Jscreen"
    assert printable("two\nlines") == "two\\x0alines"
    assert printable("two\nlines", multiline=True) == "two\nlines"


def test_the_store_never_writes_a_value_it_was_given(tmp_path: Path) -> None:
    from orchestrator.model.states import HostState
    from orchestrator.store.db import Store
    from tests.unit.fakes import rollout_spec

    redact.remember(VALUE)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    spec = rollout_spec()
    store.create_rollout(spec)
    step = store.step_started("R1", "web1", "update[1]", f"run install {VALUE}")
    store.step_ended(step, "failed", f"exit 1: {VALUE}", work=0.1, exit_code=1, output_tail=f"out {VALUE}")
    store.save_host("R1", "web1", HostState.PENDING, Progress(error=f"reason {VALUE}"))
    store.record_action("R1", "pause", "alice", f"because {VALUE}")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert VALUE.encode() not in raw
    (journal,) = store.steps("R1")
    assert (journal.detail, journal.output_tail) == ("exit 1: ***", "out ***")
    assert (tmp_path / "store.db").stat().st_mode & 0o777 == 0o600
