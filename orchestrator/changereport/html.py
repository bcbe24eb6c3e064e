"""The change report as one self-contained HTML5 file: inline CSS, inline SVG, no script, nothing fetched
(a Content-Security-Policy of ``default-src 'none'`` says so to the browser as well), laid out to print.

The template is autoescaped; the only Markup that enters it is the pictures (escaped in ``svg.py``) and
the hashes (escaped here). The document is taken as valid (``jsonform.validate``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from orchestrator.changereport import svg
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

TEMPLATES = Path(__file__).resolve().parent / "templates"
# A timeline of more hosts than this would be taller than a printed page, and a picture is never split
# across pages (it would be cut), so a long rollout gets one picture per this many hosts.
HOSTS_PER_TIMELINE = 50
BAD = frozenset({"failed", "failed_out", "interrupted", "reject", "rejected", "halted", "aborted", "error"})
WARN = frozenset({"rolled_back", "skipped", "pending", "running", "partial", "paused", "rolling_back"})
GOOD = frozenset({"ok", "succeeded", "passed", "approve", "approved", "sent", "delivered"})


def _hash(value: str) -> Markup:
    # A break opportunity after every 32 characters, so a 64-digit hash wraps into two even lines.
    parts = [str(escape(value[i : i + 32])) for i in range(0, len(value), 32)]
    return Markup("<wbr>".join(parts))


def _outcome_class(word: str) -> str:
    return "bad" if word in BAD else "warn" if word in WARN else "good" if word in GOOD else ""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters.update(
        iso=iso_utc,
        took=took,
        seconds=seconds_text,
        yesno=yes_no,
        measured=measured_text,
        counters=counters_text,
        hash=_hash,
        outcome_class=_outcome_class,
    )
    return env


_ENV = _environment()


def _timelines(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The timeline pictures: one over the whole rollout, or, for a long one, one per group of hosts,
    each over its own hosts' time (on a shared axis a thousand hosts' steps would be slivers)."""
    hosts = doc["implementation"]["hosts"]
    rollout = doc["rollout"]
    begin, end = rollout["started_at"], rollout["finished_at"]
    if end is None and begin is not None:
        end = doc["generated_at"]  # still running: the axis runs to now
    chunks = [hosts[i : i + HOSTS_PER_TIMELINE] for i in range(0, len(hosts), HOSTS_PER_TIMELINE)] or [[]]
    pictures = []
    for number, chunk in enumerate(chunks):
        steps = [step for host in chunk for step in host["steps"]]
        if len(chunks) > 1 and steps:
            running = any(step["ended_at"] is None and step["outcome"] == "running" for step in steps)
            picture = svg.timeline_svg(chunk, begin=None, end=doc["generated_at"] if running else None)
        else:
            picture = svg.timeline_svg(chunk, begin=begin, end=end)
        first = number * HOSTS_PER_TIMELINE + 1
        pictures.append({"svg": Markup(picture), "first": first, "last": first + len(chunk) - 1})
    return pictures


def _view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows that is not a field of the document as it stands."""
    availability = doc["availability"]
    hosts = doc["implementation"]["hosts"]
    observed = availability["seconds_observed"]
    full = availability["seconds_at_full_capacity"]
    sessions = [sample[2] for sample in availability["series"]]
    checks = Counter(str(check["outcome"]) for check in doc["testing"]["checks"])
    return {
        "sections": [
            (anchor, f"{number}. {heading}") for number, (anchor, heading) in enumerate(SECTIONS, 1)
        ],
        "host_states": host_states(hosts),
        "timelines": _timelines(doc),
        "steps": [(host["name"], step) for host in hosts for step in host["steps"]],
        "capacity": Markup(svg.capacity_svg(availability)),
        "full_share": f" ({full / observed:.1%} of the time observed)" if observed > 0 else "",
        "peak_sessions": max(sessions) if sessions else "not measured",
        "check_summary": f"{sum(checks.values())} check result(s): "
        + ", ".join(f"{n} {outcome}" for outcome, n in checks.most_common())
        + ".",
    }


def render_html(doc: Mapping[str, Any]) -> str:
    """The whole report as one HTML5 file's text."""
    template = _ENV.get_template("change_report.html.j2")
    return template.render(doc=doc, rollout=doc["rollout"], view=_view(doc))
