"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

The key texts and the note layout are those of Go's golang.org/x/mod/sumdb/note, so a checkpoint
signed here verifies with the Go tooling (witnesses, sumdb clients) and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ED25519 = 0x01  # the signed-note algorithm byte that prefixes Ed25519 key material
ROOT_SIZE = 32
MAX_SIGNATURES = 100  # Go's note.Open limit: a note can't make a verifier do unbounded work
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
MAX_TREE_SIZE = 2**64 - 1  # tlog-checkpoint sizes are uint64

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_HASH = re.compile(r"[0-9a-fA-F]{8}")


class CheckpointError(ValueError):
    """A signed note or checkpoint that must not be trusted; the message says why, on one line."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        # bool is an int to Python, but str(True) would write "True" into the signed body.
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError(f"checkpoint size must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint size {self.size} is outside 0..2**64-1")
        if len(self.root) != ROOT_SIZE:
            raise CheckpointError(f"checkpoint root must be {ROOT_SIZE} bytes, got {len(self.root)}")
        for extension in self.extensions:
            _check_line("extension line", extension)

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines)


def _check_line(what: str, line: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} must not be empty")
    if any(char < " " for char in line):
        raise CheckpointError(f"checkpoint {what} {line[:60]!r} holds a newline or control character")


def parse_body(text: str) -> Checkpoint:
    """The checkpoint in a note body, read strictly: one spelling per checkpoint."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint body needs origin, size and root lines, got {len(lines)} line(s)")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal without leading zeros")
    try:
        root = _strict_b64decode(root_text)
    except ValueError:
        raise CheckpointError(f"checkpoint root {root_text!r} is not standard base64") from None
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class Signer:
    name: str
    key_hash: int
    private_key: Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: int
    public_key: bytes


def key_hash(name: str, public_key: bytes) -> int:
    """The 32-bit id that names a key in signature lines: SHA-256(name \\n 0x01 key)[:4]."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _check_name(name: str) -> None:
    if not name or "+" in name or any(char.isspace() for char in name):
        raise ValueError(f"key name {name!r} must be non-empty, without whitespace or '+'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"key name {name!r} is not valid Unicode") from None


def new_signer(name: str) -> str:
    """A new Ed25519 signer key text: PRIVATE+KEY+<name>+<hash>+<base64(0x01 seed)>."""
    _check_name(name)
    return _signer_text(name, Ed25519PrivateKey.generate())


def _signer_text(name: str, private_key: Ed25519PrivateKey) -> str:
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = _public_bytes(private_key.public_key())
    encoded = base64.b64encode(bytes([ED25519]) + seed).decode("ascii")
    return f"PRIVATE+KEY+{name}+{key_hash(name, public):08x}+{encoded}"


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def parse_signer(text: str) -> Signer:
    parts = text.split("+", 4)  # the base64 key may itself contain '+'
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise ValueError("signer key must read PRIVATE+KEY+<name>+<8 hex>+<base64 key>")
    name, hash_text, key_text = parts[2:]
    material = _key_material(name, hash_text, key_text, "signer")
    private_key = Ed25519PrivateKey.from_private_bytes(material)
    claimed = int(hash_text, 16)
    if claimed != key_hash(name, _public_bytes(private_key.public_key())):
        raise ValueError(f"signer key hash {hash_text} does not match the key of {name!r}")
    return Signer(name, claimed, private_key)


def parse_verifier(text: str) -> Verifier:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise ValueError("verifier key must read <name>+<8 hex>+<base64 key>")
    name, hash_text, key_text = parts
    public = _key_material(name, hash_text, key_text, "verifier")
    claimed = int(hash_text, 16)
    if claimed != key_hash(name, public):
        raise ValueError(f"verifier key hash {hash_text} does not match the key of {name!r}")
    return Verifier(name, claimed, public)


def _key_material(name: str, hash_text: str, key_text: str, kind: str) -> bytes:
    _check_name(name)
    if not _KEY_HASH.fullmatch(hash_text):
        raise ValueError(f"{kind} key hash {hash_text!r} must be 8 hex digits")
    try:
        decoded = _strict_b64decode(key_text)
    except ValueError:
        raise ValueError(f"{kind} key of {name!r} is not standard base64") from None
    if len(decoded) != 33 or decoded[0] != ED25519:
        raise ValueError(f"{kind} key of {name!r} is not an Ed25519 key (0x01 and 32 bytes)")
    return decoded[1:]


def verifier_of(signer_text: str) -> str:
    """The public verifier key text that matches a signer key text."""
    return verifier_text(parse_signer(signer_text))


def verifier_text(signer: Signer) -> str:
    """The public key an auditor verifies with: ``name+hash+base64(0x01 || key)``."""
    public = _public_bytes(signer.private_key.public_key())
    encoded = base64.b64encode(bytes([ED25519]) + public).decode("ascii")
    return f"{signer.name}+{signer.key_hash:08x}+{encoded}"


def create_key_file(path: Path, name: str) -> str:
    """Write a new signer key to ``path`` (mode 0600, never over an existing file); return its verifier."""
    signer_text = new_signer(name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: losing an existing key would orphan every checkpoint it signed.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"key file {path} already exists: refusing to overwrite it") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(signer_text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return verifier_of(signer_text)


def load_signer(path: Path) -> Signer:
    """The signer key in ``path``, refused if anyone but its owner and group may read it, or its group
    may write it. Group read is allowed for a Kubernetes Secret volume, whose files a non-root worker
    reads through fsGroup (mode 0440), as the chart mounts it."""
    # fstat the open file, not the path, so the mode checked is the mode of the bytes read.
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"key file {path} is not a regular file")
        if info.st_mode & 0o037:
            raise ValueError(
                f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}: "
                "a signer key must be readable by its owner only (chmod 600), at most by its group too"
            )
        content = handle.read()
    try:
        return parse_signer(content.decode("utf-8").removesuffix("\n"))
    except ValueError as error:
        # UnicodeDecodeError is a ValueError too; neither message quotes the key material.
        raise ValueError(
            f"key file {path} does not hold a signer key (PRIVATE+KEY+<name>+<8 hex>+<base64>): {error}"
        ) from None


def sign_text(text: str, signer: Signer) -> str:
    """The signed note of any note text: the text, a blank line, one signature line."""
    _check_note_text(text)
    signature = signer.private_key.sign(text.encode("utf-8"))
    blob = base64.b64encode(signer.key_hash.to_bytes(4, "big") + signature).decode("ascii")
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {blob}\n"


def sign(checkpoint: Checkpoint, signer: Signer) -> str:
    return sign_text(checkpoint.body(), signer)


def open_text(note: str, verifiers: Sequence[str]) -> str:
    """The text of a signed note that carries a valid signature from one of ``verifiers``.

    Signature lines of unknown keys are skipped (other parties, such as witnesses, may cosign);
    a known key with a bad signature fails the whole note, as in Go's note.Open.
    """
    known = _verifier_table(verifiers)
    text, signature_lines = _split_note(note)
    verified = 0
    unknown: list[str] = []
    for name, claimed, signature in signature_lines:
        public = known.get((name, claimed))
        if public is None:
            unknown.append(f"{name}+{claimed:08x}")
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, text.encode("utf-8"))
        except InvalidSignature:
            raise CheckpointError(f"invalid signature for key {name}+{claimed:08x}") from None
        verified += 1
    if not verified:
        seen = ", ".join(unknown) or "none"
        raise CheckpointError(f"note has no signature from a known key (unknown keys: {seen})")
    return text


def unverified(note: str) -> Checkpoint:
    """The checkpoint a signed note carries, its signatures NOT checked: for choosing among notes
    already verified, or trusted as the store's own (`open_note` is what proves one)."""
    return parse_body(note.partition("\n\n")[0] + "\n")


def open_note(text: str, verifiers: Sequence[str]) -> Checkpoint:
    """The checkpoint in a signed note, once a known key's signature over it checks out."""
    return parse_body(open_text(text, verifiers))


def _verifier_table(verifiers: Sequence[str]) -> dict[tuple[str, int], bytes]:
    table: dict[tuple[str, int], bytes] = {}
    for text in verifiers:
        try:
            verifier = parse_verifier(text)
        except ValueError as error:
            raise CheckpointError(f"malformed verifier key: {error}") from None
        slot = (verifier.name, verifier.key_hash)
        if table.get(slot, verifier.public_key) != verifier.public_key:
            raise CheckpointError(f"ambiguous key {verifier.name}+{verifier.key_hash:08x}: two keys share it")
        table[slot] = verifier.public_key
    return table


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise CheckpointError("malformed note: text must end with a newline")
    if any(char < " " and char != "\n" for char in text):
        raise CheckpointError("malformed note: text holds a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError("malformed note: text is not valid Unicode") from None


def _split_note(note: str) -> tuple[str, list[tuple[str, int, bytes]]]:
    # The last blank line splits text from signatures: signature lines never hold a blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    _check_note_text(text)
    if not block.endswith("\n"):
        raise CheckpointError("malformed note: signatures must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> tuple[str, int, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise CheckpointError(f"malformed note: line {line[:40]!r} is not a signature line")
    name, _, blob_text = line[len(SIGNATURE_PREFIX) :].partition(" ")
    try:
        _check_name(name)
        blob = _strict_b64decode(blob_text)
    except ValueError:
        raise CheckpointError(f"malformed note: bad signature line for {name[:40]!r}") from None
    if len(blob) < 5:
        raise CheckpointError(f"malformed note: signature of {name[:40]!r} is too short")
    return name, int.from_bytes(blob[:4], "big"), blob[4:]


def _strict_b64decode(text: str) -> bytes:
    """Standard padded base64 with exactly one spelling per value, so notes can't be re-spelled."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text[:40]!r} is not standard base64") from None
    if base64.b64encode(decoded).decode("ascii") != text:
        raise ValueError(f"{text[:40]!r} is not canonical base64")
    return decoded
