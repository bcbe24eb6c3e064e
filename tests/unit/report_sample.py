"""A realistic change-report document, for the renderer's tests and the 1,000-host benchmark.

A canary batch of one host, then batches of two. One host (the third, or the only one) fails its check
after the update and is reverted to its snapshot: drain, maint, snapshot, update, check (failed),
revert, revert-check, ready. A second person approves after the canary, with a reason. Sixty
availability samples cover the rollout, and a checkpoint covers its audit records. Deterministic: the
same arguments give the same document.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC).timestamp()
OLD, NEW = "4.2.0", "4.3.0"
# Seconds each forward step takes; hosts differ a little, by their index.
FORWARD = (("drain", 18.0), ("maint", 1.0), ("snapshot", 7.5), ("update", 41.0), ("check", 9.0))
READY = 4.0
FALLBACK = (("revert", 12.0), ("revert-check", 8.0))
APPROVAL_WAIT = 95.0
BATCH_GAP = 3.0
INTERVAL_COUNT = 60


def _sha(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def host_names(hosts: int) -> list[str]:
    width = max(2, len(str(hosts)))
    return [f"ehr-app-{i:0{width}d}" for i in range(1, hosts + 1)]


def batches_of(names: list[str]) -> list[list[str]]:
    return [names[:1]] + [names[i : i + 2] for i in range(1, len(names), 2)]


def _step(
    name: str, attempt: int, started: float, seconds: float, outcome: str, detail: str
) -> dict[str, Any]:
    runs = name in ("update", "check", "revert-check")
    return {
        "step": name,
        "attempt": attempt,
        "started_at": round(started, 3),
        "ended_at": round(started + seconds, 3),
        "outcome": outcome,
        "exit_code": (1 if outcome == "failed" else 0) if runs else None,
        "command_sha256": _sha("command", name, attempt) if runs else None,
        "output_sha256": _sha("output", name, started) if runs else None,
        "detail": detail,
    }


def _host(name: str, batch: int, index: int, started: float, fails: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    t = started
    for step, seconds in FORWARD:
        seconds += (index % 3) * 0.7
        failed = fails and step == "check"
        detail = {
            "drain": "sessions 0 after 17 s",
            "maint": "maint set in pool ehr",
            "snapshot": f"snapshot pre-{NEW} taken",
            "update": f"dnf install ehr-app-{NEW}",
            "check": "GET /health: HTTP 500 (want 200)" if failed else "GET /health: HTTP 200",
        }[step]
        steps.append(_step(step, 1, t, seconds, "failed" if failed else "ok", detail))
        t += seconds
    if fails:
        for step, seconds in FALLBACK:
            detail = f"reverted to snapshot pre-{NEW}" if step == "revert" else f"old version {OLD} healthy"
            steps.append(_step(step, 1, t, seconds, "ok", detail))
            t += seconds
    steps.append(_step("ready", 1, t, READY, "ok", "UP in the load balancer"))
    t += READY
    return {
        "name": name,
        "batch": batch,
        "state": "rolled_back" if fails else "succeeded",
        "started_at": round(started, 3),
        "ended_at": round(t, 3),
        "version_before": OLD,
        "version_after": OLD if fails else NEW,
        "steps": steps,
    }


def _file(path: str, text: str) -> dict[str, str]:
    return {"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


def _availability(implemented: list[dict[str, Any]], begin: float, end: float, failed: str) -> dict[str, Any]:
    servers = len(implemented)
    floor = max(servers - 2, 0)
    interval = (end - begin) / (INTERVAL_COUNT - 1)
    outs = [(h["steps"][0]["started_at"], h["steps"][-1]["ended_at"]) for h in implemented]
    series: list[list[Any]] = []
    for i in range(INTERVAL_COUNT):
        t = round(begin + i * interval, 3)
        in_service = servers - sum(1 for a, b in outs if a <= t < b)
        series.append([t, in_service, 37 * in_service + (i * 7) % 11])
    full = sum(interval for _, n, _ in series[:-1] if n == servers)
    below = sum(interval for _, n, _ in series[:-1] if n < floor)
    quiet = {"http_5xx": 0, "connection_errors": 0, "response_errors": 0, "retries": 0, "redispatches": 0}
    per_host = [
        {
            "host": h["name"],
            "out_from": a,
            "out_to": b,
            "lb_errors": {**quiet, "retries": 1, "redispatches": 1} if h["name"] == failed else dict(quiet),
        }
        for h, (a, b) in zip(implemented, outs, strict=True)
    ]
    return {
        "answers": ["ISO/IEC 27001:2022 A.8.14", "SOC 2 A1.2"],
        "interval": round(interval, 3),
        "samples": len(series),
        "servers": servers,
        "floor": floor,
        "lowest_in_service": min(n for _, n, _ in series),
        "seconds_observed": round(end - begin, 3),
        "seconds_at_full_capacity": round(full, 3),
        "seconds_below_floor": round(below, 3),
        "lb_errors": {**quiet, "retries": 1, "redispatches": 1},
        "per_host": per_host,
        "series": series,
    }


def sample_document(hosts: int = 4) -> dict[str, Any]:
    """The change report of a rollout of ehr-app 4.2.0 -> 4.3.0 over ``hosts`` hosts (at least one)."""
    if hosts < 1:
        raise ValueError("a sample rollout needs at least one host")
    names = host_names(hosts)
    batches = batches_of(names)
    failed = names[2] if hosts >= 3 else names[-1]
    created = START - 1800.0
    implemented: list[dict[str, Any]] = []
    t = START
    approval_at = START
    for number, batch in enumerate(batches, start=1):
        batch_hosts = [
            _host(name, number, names.index(name), t + offset * 1.5, name == failed)
            for offset, name in enumerate(batch)
        ]
        implemented += batch_hosts
        t = max(h["ended_at"] for h in batch_hosts) + BATCH_GAP
        if number == 1:
            approval_at = t + APPROVAL_WAIT - 5
            t += APPROVAL_WAIT
    finished = t
    playbook_text = (
        "name: ehr-app 4.3.0\n"
        "pool: ehr\n"
        "strategy: {canary: 1, batch: 2, max_unavailable: 2}\n"
        "approve_after: [1]\n"
        "steps:\n"
        f"  - run: dnf install -y ehr-app-{NEW}\n"
        "checks:\n"
        "  - http: {path: /health, status: 200}\n"
        "registry_token: ***\n"
    )
    inventory_text = "pool: ehr\nhosts:\n" + "".join(
        f"  - {{name: {name}, address: 10.20.0.{10 + i % 200}, domain: {name}}}\n"
        for i, name in enumerate(names)
    )
    checks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for h in implemented:
        by_name = {s["step"]: s for s in h["steps"]}
        check = by_name["check"]
        good = check["outcome"] == "ok"
        checks.append(
            {
                "host": h["name"],
                "check": "http /health",
                "at": check["ended_at"],
                "outcome": "passed" if good else "failed",
                "measured": {"status": 200 if good else 500, "latency_ms": 41.5 + h["batch"], "version": NEW},
            }
        )
        events.append(
            {
                "host": h["name"],
                "what": "snapshot",
                "at": by_name["snapshot"]["ended_at"],
                "why": f"taken before the update to {NEW}",
            }
        )
        if not good:
            after = by_name["revert-check"]
            checks.append(
                {
                    "host": h["name"],
                    "check": "http /health (old version)",
                    "at": after["ended_at"],
                    "outcome": "passed",
                    "measured": {"status": 200, "latency_ms": 38.0, "version": OLD},
                }
            )
            events.append(
                {
                    "host": h["name"],
                    "what": "revert",
                    "at": by_name["revert"]["started_at"],
                    "why": "check http /health failed: HTTP 500 (want 200)",
                }
            )
        else:
            events.append(
                {
                    "host": h["name"],
                    "what": "delete-snapshot",
                    "at": finished + 1.0,
                    "why": "rollout finished; the snapshot is not needed any more",
                }
            )
    events.sort(key=lambda event: event["at"])
    first_record = 48_201
    records = 12 + 9 * hosts
    last_record = first_record + records - 1
    root = base64.b64encode(hashlib.sha256(str(last_record).encode()).digest()).decode()
    origin = "audit.orchestrator.klinikum.example/log"
    signature = base64.b64encode(hashlib.sha256(root.encode()).digest() * 2).decode()
    return {
        "schema": "orchestrator-change-report/1",
        "generated_at": finished + 120.0,
        "rollout": {
            "id": "r-2026-0302-ehr",
            "name": f"ehr-app {NEW}",
            "pool": "ehr",
            "state": "partial",
            "reason": f"{hosts - 1} host(s) updated, 1 rolled back ({failed}), within the failure budget",
            "created_at": created,
            "started_at": START,
            "finished_at": finished,
        },
        "request": {
            "answers": ["ISO/IEC 27001:2022 A.8.32", "SOC 2 CC8.1"],
            "requested_by": "j.schmidt",
            "requested_at": created,
            "change_ticket": "CHG-2026-0415",
            "reason": f"Security fix in ehr-app {NEW} (vendor advisory VA-2026-07)",
            "playbook": _file("playbooks/ehr-app-4.3.0.yml", playbook_text),
            "inventory": _file("inventories/ehr.yml", inventory_text),
        },
        "assessment": {
            "answers": ["ISO/IEC 27001:2022 A.8.32", "SOC 2 CC3.4"],
            "plan": "\n".join(
                f"batch {number}: {', '.join(batch)}" for number, batch in enumerate(batches, start=1)
            ),
            "hosts": hosts,
            "batches": batches,
            "capacity_floor": max(hosts - 2, 0),
            "max_unavailable": "2",
            "min_healthy": None,
            "window": "Mon-Fri 08:00-16:00 Europe/Berlin",
            "on_failure": "revert the host and go on while within the budget",
            "failure_budget": "1 host (at most 25%)",
            "snapshots": "one per host before its update, deleted when the rollout succeeds",
        },
        "approval": {
            "answers": ["ISO/IEC 27001:2022 A.8.32", "ISO/IEC 27001:2022 A.5.3", "SOC 2 CC8.1"],
            "required": True,
            "four_eyes": True,
            "decisions": [
                {
                    "action": "approve",
                    "by": "dr.k.meyer",
                    "at": approval_at,
                    "reason": "Canary healthy for 90 s, clinical lead informed; go ahead",
                    "after_batch": 1,
                }
            ],
            "approver_differs": True,
        },
        "implementation": {"answers": ["ISO/IEC 27001:2022 A.8.32", "SOC 2 CC8.1"], "hosts": implemented},
        "testing": {"answers": ["ISO/IEC 27001:2022 A.8.29", "SOC 2 CC8.1"], "checks": checks},
        "fallback": {"answers": ["ISO/IEC 27001:2022 A.8.13", "ISO/IEC 27001:2022 A.8.32"], "events": events},
        "availability": _availability(implemented, START, finished, failed),
        "communication": {
            "answers": ["ISO/IEC 27001:2022 A.5.14", "SOC 2 CC2.3"],
            "notifications": [
                {
                    "at": START - 60.0,
                    "channel": "email",
                    "to": "change-board@klinikum.example",
                    "subject": f"Rollout ehr-app {NEW} starting (CHG-2026-0415)",
                    "status": "sent",
                },
                {
                    "at": approval_at - 80.0,
                    "channel": "chat",
                    "to": "#ehr-ops",
                    "subject": "Canary done, approval needed",
                    "status": "sent",
                },
                {
                    "at": finished + 5.0,
                    "channel": "email",
                    "to": "change-board@klinikum.example",
                    "subject": f"Rollout ehr-app {NEW} finished: partial ({failed} rolled back)",
                    "status": "sent",
                },
            ],
            "note": "Ward systems informed through the clinical change calendar; no downtime was planned.",
        },
        "operator_actions": [
            {
                "at": approval_at - 40.0,
                "action": "pause",
                "by": "j.schmidt",
                "reason": "read the canary's logs before the approval",
            },
            {"at": approval_at - 10.0, "action": "resume", "by": "j.schmidt", "reason": "logs clean"},
        ],
        "audit": {
            "answers": ["ISO/IEC 27001:2022 A.8.15", "SOC 2 CC7.2"],
            "first_record": first_record,
            "last_record": last_record,
            "records": records,
            "checkpoint": {
                "origin": origin,
                "size": last_record + 1,
                "root": root,
                "text": f"{origin}\n{last_record + 1}\n{root}\n\n\u2014 {origin} {signature}\n",
            },
            "covered": True,
        },
    }
