"""`audit init|verify|proof|check-proof|export|prune` and `report`: the change record, for auditors.

Added to the main group by orchestrator.cli; errors become one line there. `verify` and
`check-proof` exit 0 when everything holds and 1 when something does not, naming what.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from orchestrator.display import printable
from orchestrator.errors import InputError
from orchestrator.terminal import console, err

key_opt = click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VERIFIER",
    help="A verifier key to trust (name+hash+base64); else ORCH_AUDIT_VERIFIER, else the local key's.",
)


@click.group()
def audit() -> None:
    """The tamper-evident audit log: signed checkpoints, verification, proofs, export."""


@audit.command()
def init() -> None:
    """Create the signing key (ORCH_AUDIT_KEY, mode 0600) and print its verifier key for auditors."""
    from orchestrator.audit.signing import init_key
    from orchestrator.config import load_settings

    settings = load_settings()
    verifier, created = init_key(settings.audit_key_file, settings.audit_origin)
    said = "created" if created else "already exists"
    console.print(printable(f"signing key {settings.audit_key_file} {said}"), soft_wrap=True)
    console.print(f"verifier key (give it to your auditors): {verifier}", soft_wrap=True, highlight=False)
    console.print(printable(f"checkpoints are exported to {settings.audit_folder}"), soft_wrap=True)


@audit.command()
@click.option(
    "--checkpoint",
    "files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A checkpoint kept elsewhere (repeatable); the export folder's are always read.",
)
@key_opt
def verify(files: tuple[Path, ...], keys: tuple[str, ...]) -> None:
    """Recompute the log's tree and hold it against every signed checkpoint; exit 1 naming the first
    bad record if anything was edited, removed, inserted, reordered or truncated."""
    from orchestrator import context
    from orchestrator.app.audit import verifiers, verify_store

    ctx = context.build()
    trusted = verifiers(ctx.settings, keys)
    verdict = verify_store(ctx.store, ctx.settings, files, trusted)
    if not verdict.ok:
        for problem in verdict.problems:
            err.print(printable(f"audit: {problem}"), soft_wrap=True)
        first = f" (first bad record: {verdict.first_bad})" if verdict.first_bad is not None else ""
        err.print(f"audit log does NOT verify{first}")
        sys.exit(1)
    latest = verdict.covered
    console.print(
        f"ok: {verdict.records} records; {verdict.signed_sizes} signed checkpoints verified "
        f"({len(verdict.checkpoints)} copies; the latest covers {latest} records"
        + (f"; the last {verdict.records - latest} are not signed yet)" if latest < verdict.records else ")")
    )
    if not trusted:
        err.print(
            "warning: no verifier key (--key, ORCH_AUDIT_VERIFIER or ORCH_AUDIT_KEY): signatures unchecked"
        )
    elif not verdict.checkpoints:
        err.print("warning: no signed checkpoint yet: only the log's own hashes were checked")


@audit.command()
@click.argument("record", type=click.IntRange(0))
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None)
def proof(record: int, checkpoint: Path | None, output: Path | None) -> None:
    """An inclusion proof of RECORD against a signed checkpoint, as JSON (`audit check-proof`)."""
    from orchestrator import context
    from orchestrator.app.audit import proof as make_proof

    note = checkpoint.read_text(encoding="utf-8") if checkpoint else None
    text = json.dumps(make_proof(context.build().store, record, note), indent=2) + "\n"
    _write(text, output)


@audit.command("check-proof")
@click.argument("proof_file", metavar="PROOF", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None)
@key_opt
def check_proof(proof_file: Path, checkpoint: Path | None, keys: tuple[str, ...]) -> None:
    """Verify a proof offline (no store needed): the record is in the log the checkpoint signed."""
    from orchestrator.app.audit import check_proof as check
    from orchestrator.app.audit import verifiers
    from orchestrator.config import load_settings

    try:
        document = json.loads(proof_file.read_text(encoding="utf-8"))
        note = checkpoint.read_text(encoding="utf-8") if checkpoint else None
        said = check(document, verifiers(load_settings(), keys), note)
    except (ValueError, KeyError, TypeError) as exc:
        err.print(printable(f"proof does NOT verify: {exc}"), soft_wrap=True)
        sys.exit(1)
    console.print(printable(f"ok: {said}"), soft_wrap=True)


@audit.command()
@click.option("--format", "form", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--since", default=None, metavar="TIME", help="Only records from TIME (ISO 8601, UTC if no zone)."
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None)
def export(form: str, since: str | None, output: Path | None) -> None:
    """Every record, one JSON object per line, for a SIEM."""
    from orchestrator import context
    from orchestrator.app.audit import export_lines

    start = _time(since, "--since") if since else None
    lines = export_lines(context.build().store, start)
    if output is None:
        for line in lines:
            click.echo(line)
        return
    _write("".join(line + "\n" for line in lines), output)


@audit.command()
@click.option("--before", required=True, metavar="TIME", help="Rollouts that ended before TIME (ISO 8601).")
@click.option("--as", "actor", default=None, help="Who prunes (recorded); else ORCH_ACTOR, else the login.")
@click.option("--reason", required=True, help="Why (required: the prune is itself recorded).")
def prune(before: str, actor: str | None, reason: str) -> None:
    """Remove rollouts that ended before TIME and empty their audit records (their hashes stay, so the
    log still verifies). Refused for records no exported checkpoint covers yet."""
    from orchestrator import context
    from orchestrator.app import identity
    from orchestrator.store.retention import prune as prune_store

    who, why = identity.actor(actor), identity.reason(reason, required_for="prune")
    done = prune_store(context.build().store, _time(before, "--before"), who, why)
    emptied = sum(last - first + 1 for first, last in done.records)
    console.print(
        printable(
            f"pruned {len(done.rollouts)} rollouts and emptied {emptied} audit records "
            f"(covered by the exported checkpoint of size {done.covered}); recorded as done by {who}"
        ),
        soft_wrap=True,
    )


def _time(text: str, where: str) -> float:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            where, f"{printable(text[:40])!r} is not a time", "ISO 8601, e.g. 2026-12-01"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    from orchestrator.audit.signing import private_write

    private_write(output, text)
    console.print(printable(f"written: {output}"), soft_wrap=True)


@click.command()
@click.argument("rollout")
@click.option(
    "--format", "form", type=click.Choice(["html", "json", "md"]), default="html", show_default=True
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None)
def report(rollout: str, form: str, output: Path | None) -> None:
    """The change report of a rollout, for an auditor: request, approval, implementation, testing,
    fall-back, availability, and the signed checkpoint covering its records."""
    from orchestrator import context
    from orchestrator.app.change_report import build, render

    ctx = context.build()
    _write(render(build(ctx.store, rollout), form), output)
