"""Signed checkpoints: the Go note package's published example, then tampering and key files.

Known answer: golang.org/x/mod/sumdb/note (note_test.go TestSign / TestOpen), whose key texts,
note layout and Ed25519 signatures we must reproduce byte for byte to interoperate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    create_key_file,
    key_hash,
    load_signer,
    new_signer,
    open_note,
    open_text,
    parse_body,
    parse_signer,
    parse_verifier,
    sign,
    sign_text,
    unverified,
    verifier_of,
    verifier_text,
)

PETER_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VERIFIER = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG

ROOT = hashlib.sha256(b"some tree").digest()
CHECKPOINT = Checkpoint("example.com/audit", 42, ROOT)


def test_go_signer_and_verifier_keys_parse() -> None:
    signer = parse_signer(PETER_SIGNER)
    verifier = parse_verifier(PETER_VERIFIER)
    assert (signer.name, signer.key_hash) == ("PeterNeumann", 0xC74F20A3)
    assert (verifier.name, verifier.key_hash) == ("PeterNeumann", 0xC74F20A3)
    assert key_hash(verifier.name, verifier.public_key) == 0xC74F20A3
    assert verifier_of(PETER_SIGNER) == PETER_VERIFIER


def test_go_example_signs_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the same key and text must give the published signature line.
    assert sign_text(TEXT, parse_signer(PETER_SIGNER)) == PETER_NOTE


def test_go_example_opens() -> None:
    assert open_text(PETER_NOTE, [PETER_VERIFIER]) == TEXT


def test_unknown_cosignatures_are_skipped() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_text(note, [PETER_VERIFIER]) == TEXT
    assert open_text(note, [ENOCH_VERIFIER]) == TEXT
    assert open_text(note, [ENOCH_VERIFIER, PETER_VERIFIER, PETER_VERIFIER]) == TEXT


def test_no_known_signature_is_refused() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    with pytest.raises(CheckpointError, match="no signature from a known key") as raised:
        open_text(note, [])
    assert "PeterNeumann+c74f20a3" in str(raised.value)
    assert "EnochRoot+af0cfe78" in str(raised.value)


def test_bad_signature_of_a_known_key_is_refused_even_beside_a_good_one() -> None:
    broken = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    for note in [TEXT + "\n" + broken, TEXT + "\n" + PETER_SIG + broken]:
        with pytest.raises(CheckpointError, match=r"^invalid signature for key PeterNeumann\+c74f20a3$"):
            open_text(note, [PETER_VERIFIER])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "\u2014 Bad Name " + PETER_SIG.split(" ")[2],
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
        TEXT + "\n" + PETER_SIG * 101,
    ],
    ids=[
        "no signatures",
        "blank line only",
        "no final newline",
        "control character",
        "lone surrogate",
        "name with a space",
        "line after the signatures",
        "hyphen for em dash",
        "unpadded base64",
        "101 signatures",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(CheckpointError, match=r"^malformed note"):
        open_text(note, [PETER_VERIFIER])


def manglings(key: str) -> list[str]:
    # As Go's TestNewVerifier: every proper substring and every one-character bump must fail.
    cut = [key[start:end] for start in range(len(key) + 1) for end in range(start + 1, len(key) + 1)]
    bumped = [key[:at] + chr(ord(key[at]) + 1) + key[at + 1 :] for at in range(len(key))]
    return [text for text in cut + bumped if text != key]


def test_mangled_verifier_keys_are_refused() -> None:
    for text in manglings(PETER_VERIFIER):
        with pytest.raises(ValueError):
            parse_verifier(text)


def test_mangled_signer_keys_are_refused() -> None:
    for text in manglings(PETER_SIGNER):
        with pytest.raises(ValueError):
            parse_signer(text)


def test_checkpoint_body_layout() -> None:
    checkpoint = Checkpoint("example.com/audit", 42, ROOT, ("witness-ext 1",))
    expected = "example.com/audit\n42\n" + base64.b64encode(ROOT).decode() + "\nwitness-ext 1\n"
    assert checkpoint.body() == expected
    assert parse_body(expected) == checkpoint


@given(
    st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=30),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1), max_size=3),
)
def test_body_round_trips(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_body(checkpoint.body()) == checkpoint


ROOT_TEXT = base64.b64encode(ROOT).decode()
URLSAFE_ROOT_TEXT = base64.urlsafe_b64encode(bytes([0xFF] * 32)).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"example.com/audit\n42\n{ROOT_TEXT}",
        f"example.com/audit\n42\n{ROOT_TEXT}\n\n",
        f"\n42\n{ROOT_TEXT}\n",
        "example.com/audit\n42\n",
        f"example.com/audit\n042\n{ROOT_TEXT}\n",
        f"example.com/audit\n+42\n{ROOT_TEXT}\n",
        f"example.com/audit\n-1\n{ROOT_TEXT}\n",
        f"example.com/audit\n\u0664\u0662\n{ROOT_TEXT}\n",
        f"example.com/audit\n{2**64}\n{ROOT_TEXT}\n",
        f"example.com/audit\n42\n{ROOT_TEXT.rstrip('=')}\n",
        f"example.com/audit\n42\n{URLSAFE_ROOT_TEXT}\n",
        f"example.com/audit\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"example.com/audit\n{ROOT_TEXT}\n42\n",
        f"example.com/audit\r\n42\n{ROOT_TEXT}\n",
    ],
)
def test_parse_body_is_strict(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_body(body)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        ("example.com/audit", -1, ROOT, ()),
        ("example.com/audit", True, ROOT, ()),
        ("example.com/audit", 2**64, ROOT, ()),
        ("example.com/audit", 1, ROOT[:31], ()),
        ("example.com/audit", 1, ROOT, ("",)),
        ("example.com/audit", 1, ROOT, ("a\nb",)),
    ],
)
def test_checkpoint_refuses_what_it_cannot_write(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root, extensions)


@pytest.fixture(scope="module")
def log_key() -> tuple[str, str]:
    signer = new_signer("example.com/audit")
    return signer, verifier_of(signer)


def test_sign_and_open_a_checkpoint(log_key: tuple[str, str]) -> None:
    signer_text, verifier_text = log_key
    note = sign(CHECKPOINT, parse_signer(signer_text))
    body, signature_line = note.split("\n\n")
    assert body + "\n" == CHECKPOINT.body()
    assert signature_line.startswith("\u2014 example.com/audit ")
    assert signature_line.endswith("\n") and signature_line.count("\n") == 1
    assert open_note(note, [verifier_text]) == CHECKPOINT


def test_new_signer_text_form(log_key: tuple[str, str]) -> None:
    signer_text, verifier_text = log_key
    parts = signer_text.split("+", 4)
    assert parts[:3] == ["PRIVATE", "KEY", "example.com/audit"]
    assert len(parts[3]) == 8 and parts[3] == parts[3].lower()
    assert base64.b64decode(parts[4])[0] == 1 and len(base64.b64decode(parts[4])) == 33
    assert verifier_text.startswith(f"example.com/audit+{parts[3]}+")


def replace_line(note: str, index: int, line: str) -> str:
    lines = note.split("\n")
    lines[index] = line
    return "\n".join(lines)


def test_tampered_notes_are_refused(log_key: tuple[str, str]) -> None:
    signer_text, verifier_text = log_key
    note = sign(CHECKPOINT, parse_signer(signer_text))
    body_lines = CHECKPOINT.body().splitlines()
    signature_line = note.split("\n\n")[1]
    name, blob = signature_line.removeprefix("\u2014 ").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    flipped = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    other_root = base64.b64encode(hashlib.sha256(b"other").digest()).decode()

    tampered = {
        "size": replace_line(note, 1, "43"),
        "root": replace_line(note, 2, other_root),
        "origin": replace_line(note, 0, "example.com/other"),
        "extension added": note.replace("\n\n", "\nextra\n\n", 1),
        "signature": note.split("\n\n")[0] + "\n\n" + flipped,
        "lines reordered": "\n".join([body_lines[1], body_lines[0], body_lines[2]]) + "\n\n" + signature_line,
        "signature first": signature_line + "\n" + CHECKPOINT.body(),
        "blank line missing": CHECKPOINT.body() + signature_line,
        "blank line doubled": CHECKPOINT.body() + "\n\n" + signature_line,
    }
    accepted = [what for what, text in tampered.items() if opens(text, [verifier_text])]
    assert accepted == []


def opens(note: str, verifiers: list[str]) -> bool:
    try:
        open_note(note, verifiers)
    except CheckpointError:
        return False
    return True


def test_other_keys_do_not_vouch_for_a_note(log_key: tuple[str, str]) -> None:
    signer_text, _ = log_key
    note = sign(CHECKPOINT, parse_signer(signer_text))
    same_name_other_key = verifier_of(new_signer("example.com/audit"))
    other_name = verifier_of(new_signer("example.com/other"))
    for verifiers in [[same_name_other_key], [other_name], [PETER_VERIFIER], []]:
        with pytest.raises(CheckpointError, match="no signature from a known key"):
            open_note(note, verifiers)


def test_a_witness_cosignature_keeps_the_note_valid(log_key: tuple[str, str]) -> None:
    signer_text, verifier_text = log_key
    witness = new_signer("witness.example")
    note = sign(CHECKPOINT, parse_signer(signer_text))
    cosigned = note + sign(CHECKPOINT, parse_signer(witness)).split("\n\n")[1]
    assert open_note(cosigned, [verifier_text]) == CHECKPOINT
    assert open_note(cosigned, [verifier_of(witness)]) == CHECKPOINT


def test_malformed_verifier_keys_are_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="malformed verifier key"):
        open_text(PETER_NOTE, ["PeterNeumann+c74f20a3+"])


def test_a_note_that_is_not_a_checkpoint_is_refused() -> None:
    with pytest.raises(CheckpointError, match="checkpoint body needs origin, size and root"):
        open_note(PETER_NOTE, [PETER_VERIFIER])


@pytest.mark.parametrize("name", ["", "with space", "tab\there", "plus+sign", "new\nline", "\u00a0nbsp"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        new_signer(name)


def test_create_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    verifier_text = create_key_file(path, "example.com/audit")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert verifier_of(path.read_text().removesuffix("\n")) == verifier_text
    signer = load_signer(path)
    assert open_note(sign(CHECKPOINT, signer), [verifier_text]) == CHECKPOINT


def test_create_key_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    create_key_file(path, "example.com/audit")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        create_key_file(path, "example.com/audit")
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o620, 0o606])
def test_load_signer_refuses_a_key_others_can_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit.key"
    create_key_file(path, "example.com/audit")
    path.chmod(mode)
    with pytest.raises(ValueError, match=f"key file {path} has mode {mode:04o}.*owner only"):
        load_signer(path)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_load_signer_takes_a_key_its_owner_or_group_may_only_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit.key"
    create_key_file(path, "example.com/audit")
    path.chmod(mode)
    assert load_signer(path).name == "example.com/audit"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        b"\xff\xfe binary\n",
        PETER_VERIFIER.encode() + b"\n",
        PETER_SIGNER.replace("c74f20a3", "c74f20a4").encode() + b"\n",
    ],
)
def test_load_signer_refuses_a_malformed_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    with pytest.raises(ValueError, match=f"key file {path} does not hold a signer key") as raised:
        load_signer(path)
    assert "AYEKFALV" not in str(raised.value)  # the message never echoes key material


def test_load_signer_reads_the_go_key(tmp_path: Path) -> None:
    path = tmp_path / "peter.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(PETER_SIGNER + "\n")
    assert sign_text(TEXT, load_signer(path)) == PETER_NOTE


def test_unverified_reads_a_note_without_its_key_and_refuses_what_is_not_one() -> None:
    signer = parse_signer(PETER_SIGNER)
    checkpoint = Checkpoint("example.com/log", 42, bytes(range(32)))
    assert unverified(sign(checkpoint, signer)) == checkpoint
    assert verifier_text(signer) == verifier_of(PETER_SIGNER) == PETER_VERIFIER
    for garbage in ("", "just text", "example.com/log\nforty\nAAAA\n\n\u2014 x y\n"):
        with pytest.raises(CheckpointError):
            unverified(garbage)
