"""A rollout's change report: the document (orchestrator/audit/change-report.schema.json) built from
the store, for the renderers in orchestrator.changereport. Each section names the audit items it
answers, so an auditor sampling changes finds each piece of evidence where the framework asks for it."""

from __future__ import annotations

import base64
import time
from typing import Any

from orchestrator.app.availability import availability
from orchestrator.audit.checkpoint import unverified
from orchestrator.audit.verify import StoredRecord
from orchestrator.errors import InputError
from orchestrator.model.records import Action, HostStatus, Rollout, Step
from orchestrator.report import plan_text
from orchestrator.store import audit
from orchestrator.store.db import Store
from orchestrator.store.samples import samples

A832, CC81 = "ISO/IEC 27001:2022 A.8.32 change management", "SOC 2 CC8.1 change management"
ANSWERS = {
    "request": [f"{A832}: the change is requested and recorded", f"{CC81}: changes are documented"],
    "assessment": [f"{A832}: impact assessed before the change", f"{CC81}: changes are designed"],
    "approval": [
        f"{A832}: the change is authorised",
        f"{CC81}: changes are authorised",
        "ISO/IEC 27001:2022 A.5.3 segregation of duties (four eyes, where the playbook demands it)",
    ],
    "implementation": [f"{A832}: the change as carried out", f"{CC81}: changes are implemented as approved"],
    "testing": [f"{A832}: the change is tested", f"{CC81}: changes are tested"],
    "fallback": [f"{A832}: fall-back procedures", f"{CC81}: changes can be backed out"],
    "availability": [
        "ISO/IEC 27001:2022 A.8.14 redundancy of information processing facilities",
        "SOC 2 A1.2 availability commitments",
        "HDS availability of hosted health data",
    ],
    "communication": [f"{A832}: the change is communicated to those concerned"],
    "audit": [
        "ISO/IEC 27001:2022 A.8.15 logging (tamper-evident, signed)",
        "ISO/IEC 27001:2022 A.5.28 collection of evidence",
    ],
}
FALLBACK_STEPS = {"verify_old": "old version checked", "restore": "restore"}
FALLBACK_RECORDS = {"snapshot.created": "snapshot", "snapshot.reverted": "revert"}
FALLBACK_ACTIONS = {
    "snapshot_deleted": "delete-snapshot",
    "snapshot_kept": "snapshot kept",
    "rollback": "rollback",
}


def build(store: Store, rollout_id: str) -> dict[str, Any]:
    rollout = store.rollout(rollout_id)
    if rollout is None:
        raise InputError("ROLLOUT", f"no rollout {rollout_id!r}", "an id that `orchestrator history` lists")
    hosts, steps, actions = store.hosts(rollout_id), store.steps(rollout_id), store.action_log(rollout_id)
    with store.session() as s:
        events = audit.of_rollout(s, rollout_id, ("check.result", *FALLBACK_RECORDS))
    spec = rollout.spec
    return {
        "schema": "orchestrator-change-report/1",
        "generated_at": time.time(),
        "rollout": {
            "id": rollout.id,
            "name": rollout.name,
            "pool": rollout.pool,
            "state": rollout.state.value,
            "reason": rollout.reason,
            "created_at": rollout.created_at,
            "started_at": rollout.started_at,
            "finished_at": rollout.finished_at,
        },
        "request": _request(rollout),
        "assessment": _assessment(rollout),
        "approval": _approval(rollout, actions),
        "implementation": {"answers": ANSWERS["implementation"], "hosts": _hosts(hosts, steps)},
        "testing": {"answers": ANSWERS["testing"], "checks": _checks(events)},
        "fallback": {"answers": ANSWERS["fallback"], "events": _fallback(steps, actions, events)},
        "availability": {
            "answers": ANSWERS["availability"],
            **availability(samples(store, rollout_id), spec, steps),
        },
        "communication": {
            "answers": ANSWERS["communication"],
            "notifications": [],
            "note": "notifications are not sent by this version; the people involved acted through the CLI, "
            "as the operator actions show",
        },
        "operator_actions": [
            {"at": a.at, "action": a.action, "by": a.actor, "reason": a.reason or a.detail} for a in actions
        ],
        "audit": _audit(store, rollout_id),
    }


def _request(rollout: Rollout) -> dict[str, Any]:
    r = rollout.spec.request
    none = {"path": "", "sha256": "", "text": ""}
    return {
        "answers": ANSWERS["request"],
        "requested_by": r.requested_by if r else "unknown (submitted without a requester)",
        "requested_at": r.requested_at if r else rollout.created_at,
        "change_ticket": r.change_ticket if r else None,
        "reason": r.reason if r else None,
        "playbook": r.playbook.model_dump() if r else {**none, "path": str(rollout.spec.playbook_path)},
        "inventory": r.inventory.model_dump() if r else {**none, "path": str(rollout.spec.inventory_path)},
    }


def _assessment(rollout: Rollout) -> dict[str, Any]:
    from orchestrator.engine.rollout.capacity import capacity_floor

    spec = rollout.spec
    budget = spec.failure_budget
    return {
        "answers": ANSWERS["assessment"],
        "plan": plan_text(spec),
        "hosts": len(spec.hosts),
        "batches": spec.batches,
        "capacity_floor": capacity_floor(spec, len(spec.hosts)),
        "max_unavailable": None if spec.max_unavailable is None else str(spec.max_unavailable),
        "min_healthy": None if spec.min_healthy is None else str(spec.min_healthy),
        "window": spec.window.parsed().describe() if spec.window else None,
        "on_failure": spec.on_failure,
        "failure_budget": f"{budget.count} hosts, at most {budget.percent}",
        "snapshots": (
            f"{'memory + disk' if spec.snapshot_memory else 'disk'}, {spec.snapshot_retention}"
            if spec.snapshot_enabled
            else "none"
        ),
    }


def _approval(rollout: Rollout, actions: list[Action]) -> dict[str, Any]:
    spec = rollout.spec
    requester = spec.request.requested_by if spec.request else None
    decisions = [
        {
            "action": a.action,
            "by": a.actor,
            "at": a.at,
            "reason": a.reason,
            "after_batch": a.batch,
        }
        for a in actions
        if a.action in ("approve", "reject")
    ]
    differs = None
    if decisions and requester is not None:
        differs = all(d["by"] != requester for d in decisions)
    return {
        "answers": ANSWERS["approval"],
        "required": bool(spec.approve_after),
        "four_eyes": spec.four_eyes,
        "decisions": decisions,
        "approver_differs": differs,
    }


def _hosts(hosts: list[HostStatus], steps: list[Step]) -> list[dict[str, Any]]:
    by_host: dict[str, list[Step]] = {}
    for step in steps:
        by_host.setdefault(step.host, []).append(step)
    out = []
    for h in hosts:
        mine = by_host.get(h.name, [])
        out.append(
            {
                "name": h.name,
                "batch": h.batch + 1,
                "state": h.state.value,
                "started_at": mine[0].started_at if mine else None,
                "ended_at": mine[-1].ended_at if mine else None,
                "version_before": None,  # no version probe in the playbook format yet
                "version_after": None,
                "steps": [_step(s) for s in mine],
            }
        )
    return out


def _step(s: Step) -> dict[str, Any]:
    return {
        "step": s.step,
        "attempt": s.attempt,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "outcome": s.outcome,
        "exit_code": s.exit_code,
        "command_sha256": s.command_sha256,
        "output_sha256": s.output_sha256,
        "detail": s.detail,
    }


def _checks(records: list[StoredRecord]) -> list[dict[str, Any]]:
    """Every probe of every check, with what it saw: the evidence that the change was tested."""
    out = []
    for r in records:
        if r.kind != "check.result":
            continue
        f = r.fields()
        out.append(
            {
                "host": f.get("host", ""),
                "check": f"{f.get('check', '')} ({f.get('phase', '')})",
                "at": r.at,
                "outcome": "passed" if f.get("ok") else "failed",
                "measured": {"seen": str(f.get("seen", ""))},
            }
        )
    return out


def _fallback(steps: list[Step], actions: list[Action], records: list[StoredRecord]) -> list[dict[str, Any]]:
    events = [
        {"host": s.host, "what": FALLBACK_STEPS[s.step], "at": s.started_at, "why": s.detail}
        for s in steps
        if s.step in FALLBACK_STEPS
    ]
    for r in records:
        if r.kind in FALLBACK_RECORDS:
            f = r.fields()
            what = FALLBACK_RECORDS[r.kind]
            done = "taken" if what == "snapshot" else "reverted to"
            events.append(
                {
                    "host": f.get("host", ""),
                    "what": what,
                    "at": r.at,
                    "why": f"{f.get('domain')}: {done} {f.get('name')}",
                }
            )
    for a in actions:
        if a.action in FALLBACK_ACTIONS:
            host, _, why = a.detail.partition(": ")
            events.append(
                {
                    "host": host if why else "",
                    "what": FALLBACK_ACTIONS[a.action],
                    "at": a.at,
                    "why": (why or a.detail) + (f" ({a.actor}: {a.reason})" if a.reason else ""),
                }
            )
    return sorted(events, key=lambda e: e["at"])


def _audit(store: Store, rollout_id: str) -> dict[str, Any]:
    with store.session() as s:
        seqs = audit.seqs_of(s, rollout_id)
        stored = audit.stored_checkpoints(s)
    last = seqs[-1] if seqs else None
    covering = next(((size, note) for size, note, _ in stored if last is not None and size > last), None)
    checkpoint = None
    if covering:
        signed = unverified(covering[1])  # the store's own; `audit verify` checks its signature
        root = base64.b64encode(signed.root).decode()
        checkpoint = {"origin": signed.origin, "size": signed.size, "root": root, "text": covering[1]}
    return {
        "answers": ANSWERS["audit"],
        "first_record": seqs[0] if seqs else None,
        "last_record": last,
        "records": len(seqs),
        "checkpoint": checkpoint,
        "covered": checkpoint is not None,
    }


def render(doc: dict[str, Any], form: str) -> str:
    from orchestrator.changereport import html, jsonform, markdown

    if form == "json":
        jsonform.validate(doc)
        return jsonform.render_json(doc)
    if form == "md":
        return markdown.render_markdown(doc)
    return html.render_html(doc)
