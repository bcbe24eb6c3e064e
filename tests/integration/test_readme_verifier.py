"""The 30-line proof verifier the README gives auditors works as printed: it accepts a real proof from
`audit proof`, and refuses one whose record, path or checkpoint was changed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.app.audit import proof
from orchestrator.audit.checkpoint import new_signer, verifier_of
from orchestrator.audit.signing import FileCheckpointer
from orchestrator.model.states import RolloutState
from orchestrator.store.audit import AuditLog
from orchestrator.store.db import Store
from tests.unit.fakes import host_spec, rollout_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verifier() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "def check(proof_file, verifier_key)" in b]
    return block


def verify(tmp_path: Path, document: dict[str, object], key: str) -> subprocess.CompletedProcess[str]:
    script, proof_file = tmp_path / "verify.py", tmp_path / "proof.json"
    script.write_text(readme_verifier())
    proof_file.write_text(json.dumps(document))
    return subprocess.run(
        [sys.executable, str(script), str(proof_file), key], capture_output=True, text=True, timeout=30
    )


def _bigger(note: str) -> str:
    """The checkpoint with its size line raised by one (its signature no longer matches)."""
    origin, size, rest = note.split("\n", 2)
    return f"{origin}\n{int(size) + 1}\n{rest}"


def key_with_a_plus(path: Path) -> None:
    """A signing key whose verifier's base64 part holds a "+" (about every other key does): the
    verifier must not split the key text on it."""
    while True:
        signer = new_signer("test.example/audit")
        if "+" in verifier_of(signer).split("+", 2)[2]:
            break
    path.write_text(signer + "\n")
    path.chmod(0o600)


def test_the_readme_verifier_checks_a_real_proof(tmp_path: Path) -> None:
    key_with_a_plus(tmp_path / "key")
    checkpointer = FileCheckpointer(tmp_path / "key", tmp_path / "checkpoints", "test.example/audit", every=5)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", audit=AuditLog(checkpointer))
    spec = rollout_spec(hosts=[host_spec("web1"), host_spec("web2")])
    store.create_rollout(spec)
    store.transition_rollout(spec.rollout_id, RolloutState.RUNNING)
    for n in range(9):
        store.record_action(spec.rollout_id, "note", "alice", reason=f"reason {n}")
    store.finish_rollout(spec.rollout_id, RolloutState.SUCCEEDED, "done")
    key = checkpointer.verifier()
    for seq in (0, 4, 7, 11):
        document = proof(store, seq, None)
        good = verify(tmp_path, document, key)
        assert good.returncode == 0, good.stderr
        assert f"record {seq} is in test.example/audit of" in good.stdout
    document = proof(store, 4, None)
    bad = {
        "body": {**document, "body": str(document["body"]).replace("reason", "REASON")},
        "path": {**document, "proof": [("0" * 64), *list(document["proof"])[1:]]},  # type: ignore[call-overload]
        "record": {**document, "record": 5},
        "checkpoint": {**document, "checkpoint": _bigger(str(document["checkpoint"]))},
    }
    for what, changed in bad.items():
        refused = verify(tmp_path, changed, key)
        assert refused.returncode != 0, (what, refused.stdout)
