"""The change report as GitHub-flavoured Markdown, for a change ticket: the same sections as the HTML,
the same tables, the availability figures as text instead of pictures.

No value can change the document's structure: Markdown's punctuation (and ``<``, ``>``, ``&``, ``@``,
``$``) is backslash-escaped, ``|`` in a table cell is ``\\|`` and a line break inside a value is
``<br>``, so a value can neither end a table row nor add a cell, a tag, a link or a mention. Files are
fenced with more backticks than they contain.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.changereport.text import (
    SECTIONS,
    counters_text,
    host_states,
    iso_utc,
    measured_text,
    seconds_text,
    took,
    yes_no,
)

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that can start markup
# in the middle of a line (GitHub adds $ for maths, @ for mentions, ~ for strike-through).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$@])")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def text(value: Any) -> str:
    """A value as inline Markdown that shows exactly its characters, line breaks as ``<br>``."""
    return _NEWLINES.sub("<br>", _SPECIAL.sub(r"\\\1", str(value)))


def code(value: Any) -> str:
    """A value as an inline code span (hashes, ids, paths); ``|`` stays escaped for tables."""
    raw = _NEWLINES.sub(" ", str(value))
    longest = max((len(run) for run in re.findall(r"`+", raw)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    return f"{fence}{pad}{raw.replace('|', chr(92) + '|')}{pad}{fence}"


def fenced(value: str) -> list[str]:
    longest = max((len(run) for run in re.findall(r"`{3,}", value)), default=2)
    fence = "`" * (longest + 1)
    return [f"{fence}text", *value.splitlines(), fence]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A GFM table; the cells must already be escaped (``text``/``code``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _facts(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [f"- **{label}:** {value}" for label, value in pairs]


def _answers(items: Sequence[str]) -> list[str]:
    shown = "; ".join(text(item) for item in items) if items else "_no audit-framework item listed_"
    return [f"**Answers:** {shown}", ""]


def _or(value: Any, instead: str) -> str:
    return instead if value is None else text(value)


def _heading(number: int) -> str:
    return f"## {number}. {SECTIONS[number - 1][1]}"


def _request(doc: Mapping[str, Any]) -> list[str]:
    req = doc["request"]
    out = [_heading(1), "", *_answers(req["answers"])]
    out += _facts(
        [
            ("Requested by", text(req["requested_by"])),
            ("Requested at", iso_utc(req["requested_at"])),
            ("Change ticket", _or(req["change_ticket"], "none given")),
            ("Reason", _or(req["reason"], "none given")),
        ]
    )
    for label, file in (("Playbook", req["playbook"]), ("Inventory", req["inventory"])):
        out += [
            "",
            f"### {label} {code(file['path'])}",
            "",
            f"SHA-256 {code(file['sha256'])}, as rendered for the run; secrets are masked as `***`.",
            "",
        ]
        out += fenced(file["text"])
    return out


def _assessment(doc: Mapping[str, Any]) -> list[str]:
    a = doc["assessment"]
    out = [_heading(2), "", *_answers(a["answers"])]
    out += _facts(
        [
            ("Hosts", f"{text(a['hosts'])} in {len(a['batches'])} batch(es)"),
            ("Capacity floor", f"{text(a['capacity_floor'])} server(s) must stay in service"),
            ("Max unavailable", _or(a["max_unavailable"], "not set")),
            ("Min healthy", _or(a["min_healthy"], "not set")),
            ("Window", _or(a["window"], "none: any time")),
            ("On failure", text(a["on_failure"])),
            ("Failure budget", text(a["failure_budget"])),
            ("Snapshots", text(a["snapshots"])),
        ]
    )
    out.append("")
    if a["batches"]:
        rows = [[str(i), str(len(b)), text(", ".join(b))] for i, b in enumerate(a["batches"], start=1)]
        out += table(["Batch", "Hosts", "Host names"], rows)
    else:
        out.append("_No batches were planned._")
    out += ["", "### Plan as shown before the start", "", *fenced(a["plan"])]
    return out


def _approval(doc: Mapping[str, Any]) -> list[str]:
    ap = doc["approval"]
    out = [_heading(3), "", *_answers(ap["answers"])]
    out += _facts(
        [
            ("Approval required", yes_no(ap["required"])),
            ("Four eyes", yes_no(ap["four_eyes"])),
            (
                "Approver differs from requester",
                yes_no(ap["approver_differs"], "not applicable: nothing was approved"),
            ),
        ]
    )
    out.append("")
    if ap["decisions"]:
        rows = [
            [
                iso_utc(d["at"]),
                text(d["action"]),
                text(d["by"]),
                _or(d["after_batch"], "before start"),
                text(d["reason"]),
            ]
            for d in ap["decisions"]
        ]
        out += table(["At (UTC)", "Decision", "By", "After batch", "Reason"], rows)
    else:
        out.append("_No approval or rejection was recorded._")
    return out


def _hash_cell(step: Mapping[str, Any]) -> str:
    parts = []
    if step["command_sha256"] is not None:
        parts.append("cmd " + code(step["command_sha256"]))
    if step["output_sha256"] is not None:
        parts.append("out " + code(step["output_sha256"]))
    return "<br>".join(parts)


def _implementation(doc: Mapping[str, Any]) -> list[str]:
    im = doc["implementation"]
    hosts = im["hosts"]
    out = [_heading(4), "", *_answers(im["answers"]), "### Hosts", ""]
    if hosts:
        out += table(
            [
                "Host",
                "Batch",
                "State",
                "Started (UTC)",
                "Ended (UTC)",
                "Took",
                "Version before",
                "Version after",
            ],
            [
                [
                    text(h["name"]),
                    text(h["batch"]),
                    f"**{text(h['state'])}**",
                    iso_utc(h["started_at"], "not started"),
                    iso_utc(h["ended_at"], "not ended"),
                    took(h["started_at"], h["ended_at"]),
                    _or(h["version_before"], "unknown"),
                    _or(h["version_after"], "unknown"),
                ]
                for h in hosts
            ],
        )
    else:
        out.append("_No hosts were part of this rollout._")
    out += ["", "### Steps", ""]
    steps = [(h["name"], s) for h in hosts for s in h["steps"]]
    if steps:
        out += table(
            [
                "Host",
                "Step",
                "Try",
                "Started (UTC)",
                "Ended (UTC)",
                "Took",
                "Outcome",
                "Exit",
                "SHA-256",
                "Detail",
            ],
            [
                [
                    text(host),
                    text(s["step"]),
                    text(s["attempt"]),
                    iso_utc(s["started_at"]),
                    iso_utc(s["ended_at"], "no end recorded"),
                    took(s["started_at"], s["ended_at"]),
                    f"**{text(s['outcome'])}**",
                    _or(s["exit_code"], ""),
                    _hash_cell(s),
                    text(s["detail"]),
                ]
                for host, s in steps
            ],
        )
    else:
        out.append("_No steps were recorded._")
    out += ["", "### Operator actions", ""]
    if doc["operator_actions"]:
        out += table(
            ["At (UTC)", "Action", "By", "Reason"],
            [
                [iso_utc(o["at"]), text(o["action"]), text(o["by"]), text(o["reason"])]
                for o in doc["operator_actions"]
            ],
        )
    else:
        out.append("_No operator paused, resumed, aborted or otherwise steered the rollout._")
    return out


def _testing(doc: Mapping[str, Any]) -> list[str]:
    te = doc["testing"]
    out = [_heading(5), "", *_answers(te["answers"])]
    if not te["checks"]:
        return [*out, "_No check results were recorded._"]
    counts = Counter(str(c["outcome"]) for c in te["checks"])
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.most_common())
    out += [text(f"{len(te['checks'])} check result(s): {summary}."), ""]
    out += table(
        ["Host", "Check", "At (UTC)", "Outcome", "Measured"],
        [
            [
                text(c["host"]),
                text(c["check"]),
                iso_utc(c["at"]),
                f"**{text(c['outcome'])}**",
                "<br>".join(
                    f"{text(k)} = {text(measured_text(v))}" for k, v in sorted(c["measured"].items())
                ),
            ]
            for c in te["checks"]
        ],
    )
    return out


def _fallback(doc: Mapping[str, Any]) -> list[str]:
    fb = doc["fallback"]
    out = [_heading(6), "", *_answers(fb["answers"])]
    if not fb["events"]:
        return [*out, "_No snapshot, revert or rollback was recorded._"]
    return out + table(
        ["Host", "What", "At (UTC)", "Why"],
        [[text(e["host"]), text(e["what"]), iso_utc(e["at"]), text(e["why"])] for e in fb["events"]],
    )


def _availability(doc: Mapping[str, Any]) -> list[str]:
    av = doc["availability"]
    out = [_heading(7), "", *_answers(av["answers"])]
    series = av["series"]
    observed, full = av["seconds_observed"], av["seconds_at_full_capacity"]
    share = f" ({full / observed:.1%} of the time observed)" if observed > 0 else ""
    below = av["seconds_below_floor"]
    in_service = [int(sample[1]) for sample in series]
    sessions = [int(sample[2]) for sample in series]
    out += _facts(
        [
            (
                "Samples",
                f"{text(av['samples'])}, every {seconds_text(av['interval'])}, over {seconds_text(observed)}",
            ),
            ("Pool", f"{text(av['servers'])} server(s); floor {text(av['floor'])}"),
            ("Lowest in service", _or(av["lowest_in_service"], "not measured")),
            ("At full capacity", seconds_text(full) + share),
            ("Below the floor", f"**{seconds_text(below)}**" if below > 0 else "never (0 s)"),
            (
                "In service over the samples",
                f"from {min(in_service)} to {max(in_service)}, "
                f"{sum(1 for n in in_service if n < av['floor'])} sample(s) below the floor"
                if series
                else "no samples were taken",
            ),
            ("Peak sessions", str(max(sessions)) if sessions else "not measured"),
        ]
    )
    if series:
        out.append(f"- **Window sampled:** {iso_utc(series[0][0])} to {iso_utc(series[-1][0])}")
    out += ["", "### Load-balancer errors over the window", ""]
    if av["lb_errors"]:
        out += table(
            ["Counter", "Increase"], [[text(k), text(v)] for k, v in sorted(av["lb_errors"].items())]
        )
    else:
        out.append("_No load-balancer counters were read._")
    out += ["", "### Hosts out of service", ""]
    if av["per_host"]:
        out += table(
            ["Host", "Out from (UTC)", "Back at (UTC)", "Out for", "Load-balancer errors (increase)"],
            [
                [
                    text(p["host"]),
                    iso_utc(p["out_from"]),
                    iso_utc(p["out_to"], "not back"),
                    took(p["out_from"], p["out_to"]),
                    text(counters_text(p["lb_errors"])),
                ]
                for p in av["per_host"]
            ],
        )
    else:
        out.append("_No host was taken out of service._")
    return out


def _communication(doc: Mapping[str, Any]) -> list[str]:
    co = doc["communication"]
    out = [_heading(8), "", *_answers(co["answers"])]
    if co["notifications"]:
        out += table(
            ["At (UTC)", "Channel", "To", "Subject", "Status"],
            [
                [iso_utc(n["at"]), text(n["channel"]), text(n["to"]), text(n["subject"]), text(n["status"])]
                for n in co["notifications"]
            ],
        )
    else:
        out.append("_No notification was sent._")
    if co["note"]:
        out += ["", f"**Note:** {text(co['note'])}"]
    return out


def _audit(doc: Mapping[str, Any]) -> list[str]:
    au = doc["audit"]
    out = [_heading(9), "", *_answers(au["answers"])]
    numbers = ""
    if au["first_record"] is not None:
        numbers = f" (numbers {text(au['first_record'])} to {_or(au['last_record'], '?')})"
    covered = (
        "**yes**: every record of this rollout is inside the signed checkpoint"
        if au["covered"]
        else "**no**: not every record of this rollout is inside a signed checkpoint yet"
    )
    out += _facts([("Records", text(au["records"]) + numbers), ("Covered by the checkpoint", covered)])
    checkpoint = au["checkpoint"]
    if checkpoint is None:
        return [*out, "", "_No checkpoint has been signed over these records yet._"]
    out += ["", "### Checkpoint", ""]
    out += _facts(
        [
            ("Origin", code(checkpoint["origin"])),
            ("Tree size", text(checkpoint["size"])),
            ("Root hash", code(checkpoint["root"])),
        ]
    )
    return [*out, "", *fenced(checkpoint["text"])]


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The whole report as one Markdown text."""
    rollout = doc["rollout"]
    finished = iso_utc(rollout["finished_at"], "not finished")
    if rollout["started_at"] is not None and rollout["finished_at"] is not None:
        finished += f" (took {took(rollout['started_at'], rollout['finished_at'])})"
    out = [f"# Change report: {text(rollout['name'])}", ""]
    out += _facts(
        [
            ("Rollout", code(rollout["id"])),
            ("Pool", text(rollout["pool"])),
            ("State", f"**{text(rollout['state'])}**: {text(rollout['reason'])}"),
            ("Created", iso_utc(rollout["created_at"])),
            ("Started", iso_utc(rollout["started_at"], "not started")),
            ("Finished", finished),
            ("Hosts", text(host_states(doc["implementation"]["hosts"]) or "none")),
            ("Report generated", f"{iso_utc(doc['generated_at'])}; document format {text(doc['schema'])}"),
        ]
    )
    for part in (
        _request,
        _assessment,
        _approval,
        _implementation,
        _testing,
        _fallback,
        _availability,
        _communication,
        _audit,
    ):
        out += ["", *part(doc)]
    return "\n".join(out) + "\n"
