"""atheris harness for the YAML loader: raw bytes into ``yaml_inputs.check``.

Run by tests/fuzz/test_yaml_fuzz.py (``python tests/fuzz/atheris_yaml.py CORPUS -max_total_time=N``).
A broken property is appended to $ORCH_FUZZ_FINDINGS once per signature and the fuzz carries on, so
one finding does not end the run; libFuzzer's own timeout and RSS limit catch hangs and blow-ups.
The counters of yaml_inputs.STATS go to the same name with .stats every 500 inputs.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import atheris

with atheris.instrument_imports(include=["orchestrator", "yaml"]):
    from orchestrator.model import yamlfile, yamlscalars  # noqa: F401  (instrumented)
    from tests.fuzz import yaml_inputs

FINDINGS = os.environ.get("ORCH_FUZZ_FINDINGS", "atheris-findings.jsonl")
seen: set[str] = set()


def one_input(data: bytes) -> None:
    try:
        yaml_inputs.check(data)
    except BaseException as exc:  # every escape is a finding
        kind = exc.kind if isinstance(exc, yaml_inputs.PropertyFailed) else f"{type(exc).__name__} escaped"
        sig = yaml_inputs.signature(kind, str(exc))
        if sig not in seen:
            seen.add(sig)
            with open(FINDINGS, "a") as out:
                row = {
                    "signature": sig,
                    "message": f"{kind}: {exc}",
                    "input": base64.b64encode(data).decode(),
                }
                out.write(json.dumps(row) + "\n")
    if yaml_inputs.STATS.inputs % 500 == 0:  # libFuzzer ends the process without running atexit
        with open(FINDINGS.removesuffix(".jsonl") + ".stats", "w") as out:
            out.write(str(yaml_inputs.STATS))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
