"""The change report from its document: the schema, the JSON, the HTML (with its two pictures) and the
Markdown, on the sample, on hostile values and on the thin edges (no samples, one sample, no steps, no
checkpoint, nothing approved). Pure: no browser here (tests/e2e/test_report_browser.py has one)."""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest

from orchestrator.changereport import svg
from orchestrator.changereport.html import HOSTS_PER_TIMELINE, render_html
from orchestrator.changereport.jsonform import SCHEMA_PATH, render_json, schema, validate
from orchestrator.changereport.markdown import render_markdown
from orchestrator.errors import InputError
from tests.unit.report_sample import sample_document

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x>'
HOSTILE = f"{SCRIPT}{BREAKOUT}"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <svg> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def tags_of(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser.tags


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.S)


def steps_of(doc: dict[str, Any]) -> int:
    return sum(len(host["steps"]) for host in doc["implementation"]["hosts"])


# --- schema and JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hosts", [1, 2, 4, 12])
def test_the_sample_validates_against_the_published_schema(hosts: int) -> None:
    doc = sample_document(hosts)
    validate(doc)
    assert len(doc["availability"]["series"]) == doc["availability"]["samples"] == 60
    assert doc["assessment"]["batches"][0] == [doc["implementation"]["hosts"][0]["name"]]


def test_the_sample_has_one_reverted_host_with_the_fallback_steps() -> None:
    hosts = sample_document(4)["implementation"]["hosts"]
    reverted = [h for h in hosts if h["state"] == "rolled_back"]
    assert len(reverted) == 1
    steps = [(s["step"], s["outcome"]) for s in reverted[0]["steps"]]
    assert steps == [
        ("drain", "ok"),
        ("maint", "ok"),
        ("snapshot", "ok"),
        ("update", "ok"),
        ("check", "failed"),
        ("revert", "ok"),
        ("revert-check", "ok"),
        ("ready", "ok"),
    ]


def test_the_schema_is_draft_2020_12_with_an_id_and_closed_objects() -> None:
    root = schema()
    assert root["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert root["$id"] and root["title"]
    assert SCHEMA_PATH.name == "change-report.schema.json"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, where
                assert set(node["required"]) == set(node["properties"]), where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(root, "#")


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


BROKEN = [
    ("missing top-level field", _drop("audit"), "$: required field 'audit' is missing"),
    ("missing nested field", _drop("rollout.id"), "$.rollout: required field 'id' is missing"),
    ("missing step field", _drop("implementation.hosts.0.steps.0.outcome"), "required field 'outcome'"),
    ("string for integer", _set("assessment.hosts", "4"), "$.assessment.hosts: expected integer"),
    ("boolean for integer", _set("audit.records", True), "$.audit.records: expected integer"),
    ("null for a time", _set("generated_at", None), "$.generated_at: expected number"),
    (
        "string for a time",
        _set("rollout.started_at", "09:00"),
        "$.rollout.started_at: expected number or null",
    ),
    ("unknown step outcome", _set("implementation.hosts.0.steps.0.outcome", "done"), "is not one of"),
    ("unknown decision", _set("approval.decisions.0.action", "maybe"), "is not one of"),
    ("wrong schema name", _set("schema", "orchestrator-change-report/2"), "$.schema"),
    ("extra field", _set("rollout.colour", "red"), "$.rollout: unexpected field 'colour'"),
    ("short sample", _set("availability.series.0", [1.0, 2]), "at least 3 expected"),
    ("long sample", _set("availability.series.0", [1.0, 2, 3, 4]), "at most 3 expected"),
    ("negative count", _set("availability.servers", -1), "below the minimum"),
    ("string counter", _set("availability.lb_errors.http_5xx", "0"), "$.availability.lb_errors.http_5xx"),
    (
        "object measured",
        _set("testing.checks.0.measured.status", {"a": 1}),
        "$.testing.checks.0.measured.status",
    ),
    ("answers not a list", _set("request.answers", "SOC 2"), "$.request.answers: expected array"),
]


@pytest.mark.parametrize(("mutate", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_document_is_refused_with_where(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = sample_document(4)
    mutate(doc)
    with pytest.raises(InputError) as caught:
        validate(doc)
    message = str(caught.value).replace("[0]", ".0")
    assert expected in message, message


def test_every_problem_is_counted_and_the_first_ten_named() -> None:
    doc = sample_document(12)
    for host in doc["implementation"]["hosts"]:
        host["batch"] = "one"
    with pytest.raises(InputError, match=r"12 problem\(s\).*and 2 more"):
        validate(doc)


def test_json_is_sorted_indented_and_round_trips() -> None:
    doc = sample_document(4)
    text = render_json(doc)
    assert text.endswith("}\n")
    assert text.startswith('{\n  "approval": {')
    back = json.loads(text)
    assert back == doc
    validate(back)
    assert render_json(back) == text


def test_json_refuses_nan() -> None:
    doc = sample_document(1)
    doc["availability"]["interval"] = float("nan")
    with pytest.raises(ValueError):
        render_json(doc)
    with pytest.raises(InputError, match="interval"):
        validate(doc)


# --- HTML --------------------------------------------------------------------------------------------


def test_html_has_both_pictures_with_a_bar_per_step_and_a_capacity_line() -> None:
    doc = sample_document(4)
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>")
    pictures = svgs(page)
    assert len(pictures) == 2
    timeline, capacity = pictures
    for picture in pictures:
        assert 'role="img"' in picture
        assert re.search(r"<svg[^>]*viewBox=\"0 0 \d+ [\d.]+\"", picture)
        assert "<title>" in picture
    assert timeline.count('<rect class="step"') == steps_of(doc)
    assert timeline.count("stroke-dasharray") == 1  # only the legend's "interrupted": none in the sample
    assert timeline.count('stroke="#c1121f"') == 3  # the legend's two and the failed check
    line = re.search(r'<polyline class="capacity" points="([^"]+)"', capacity)
    assert line is not None
    assert len(line.group(1).split()) == 2 * 60 - 1  # a step line: two points per change
    assert 'class="floor"' in capacity and "stroke-dasharray" in capacity


def test_html_sections_come_in_order_each_with_its_answers() -> None:
    doc = sample_document(4)
    page = render_html(doc)
    ids = re.findall(r'<section id="([a-z]+)"', page)
    assert ids == [
        "request",
        "assessment",
        "approval",
        "implementation",
        "testing",
        "fallback",
        "availability",
        "communication",
        "audit",
    ]
    bodies = re.split(r'<section id="[a-z]+"', page)[1:]
    for name, body in zip(ids, bodies, strict=True):
        for item in doc[name]["answers"]:
            assert f"<li>{item}</li>" in body, (name, item)


def test_html_shows_times_as_iso_8601_utc_and_outcomes_in_words() -> None:
    doc = sample_document(4)
    page = render_html(doc)
    assert "2026-03-02T09:00:00Z" in page
    assert '<span class="outcome bad">failed</span>' in page
    assert '<span class="outcome warn">rolled_back</span>' in page


def test_html_print_css_keeps_rows_and_pictures_whole_and_repeats_headers() -> None:
    page = render_html(sample_document(4))
    style = page[page.index("<style>") : page.index("</style>")]
    assert "@page" in style
    assert "thead { display: table-header-group; }" in style
    assert re.search(r"tr, figure, svg\.picture[^{]*\{ break-inside: avoid;", style)
    assert "break-before: page" in style
    assert page.count("<thead>") == page.count("<table")


def test_html_is_self_contained() -> None:
    doc = sample_document(12)
    doc["request"]["playbook"]["text"] += "checks:\n  - http: {url: https://ehr.klinikum.example/health}\n"
    page = render_html(doc)
    tags = tags_of(page)
    names = {name for name, _ in tags}
    assert not names & {"script", "img", "link", "iframe", "object", "embed", "image", "use", "base", "form"}
    for name, attrs in tags:
        for attr in ("src", "href", "xlink:href", "action", "srcset", "poster"):
            value = attrs.get(attr)
            assert value is None or value.startswith("#"), (name, attr, value)
        assert not any(key.startswith("on") for key in attrs), (name, attrs)
    assert not re.search(r"url\(\s*['\"]?(?!#)", page)
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", page)
    assert "@import" not in page and "@font-face" not in page
    assert "default-src 'none'" in page


WHERE_HOSTILE: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("host name", lambda d: d["implementation"]["hosts"][0].__setitem__("name", HOSTILE)),
    ("step name", lambda d: d["implementation"]["hosts"][0]["steps"][0].__setitem__("step", HOSTILE)),
    ("step detail", lambda d: d["implementation"]["hosts"][0]["steps"][0].__setitem__("detail", HOSTILE)),
    ("state", lambda d: d["implementation"]["hosts"][0].__setitem__("state", HOSTILE)),
    ("approval reason", lambda d: d["approval"]["decisions"][0].__setitem__("reason", HOSTILE)),
    ("rollout reason", lambda d: d["rollout"].__setitem__("reason", HOSTILE)),
    ("rollout name", lambda d: d["rollout"].__setitem__("name", HOSTILE)),
    ("request reason", lambda d: d["request"].__setitem__("reason", HOSTILE)),
    ("playbook text", lambda d: d["request"]["playbook"].__setitem__("text", HOSTILE)),
    ("answers", lambda d: d["audit"]["answers"].append(HOSTILE)),
    ("measured key", lambda d: d["testing"]["checks"][0]["measured"].__setitem__(HOSTILE, HOSTILE)),
    ("lb counter", lambda d: d["availability"]["lb_errors"].__setitem__(HOSTILE, 1)),
    ("fallback why", lambda d: d["fallback"]["events"][0].__setitem__("why", HOSTILE)),
    ("notification", lambda d: d["communication"]["notifications"][0].__setitem__("subject", HOSTILE)),
    ("note", lambda d: d["communication"].__setitem__("note", HOSTILE)),
    ("operator", lambda d: d["operator_actions"][0].__setitem__("by", HOSTILE)),
    ("hash", lambda d: d["implementation"]["hosts"][0]["steps"][3].__setitem__("command_sha256", HOSTILE)),
    ("checkpoint", lambda d: d["audit"]["checkpoint"].__setitem__("text", HOSTILE)),
    ("batches", lambda d: d["assessment"]["batches"][0].append(HOSTILE)),
]


@pytest.mark.parametrize("mutate", [w[1] for w in WHERE_HOSTILE], ids=[w[0] for w in WHERE_HOSTILE])
def test_every_value_is_escaped(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = sample_document(4)
    mutate(doc)
    page = render_html(doc)
    assert "<script" not in page and "<img" not in page
    assert not {"script", "img"} & {name for name, _ in tags_of(page)}
    shown = page.replace("<wbr>", "")  # long hashes get break opportunities
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert re.search(r"(&#34;|&quot;)&gt;&lt;img src=x&gt;", shown)
    assert not unescaped_tags(render_markdown(doc))


def unescaped_tags(markdown: str) -> list[str]:
    """Tags Markdown would pass through as HTML: a ``<`` not escaped by a backslash, outside code, other
    than our own ``<br>``."""
    prose = re.sub(r"^(`{3,})text\n.*?^\1$", "", markdown, flags=re.S | re.M)
    prose = re.sub(r"(`+).*?\1", "", prose)
    return re.findall(r"(?<!\\)<(?!br>)[^\s]*", prose)


# --- Markdown ----------------------------------------------------------------------------------------


def cells(row: str) -> list[str]:
    """A GFM table row's cells: a pipe escaped by a backslash does not split."""
    assert row.startswith("| ") and row.endswith(" |"), row
    found, current, i = [], "", 1
    while i < len(row) - 1:
        char = row[i]
        if char == "\\":
            current += row[i : i + 2]
            i += 2
            continue
        if char == "|":
            found.append(current)
            current = ""
        else:
            current += char
        i += 1
    found.append(current)
    return found


def tables(markdown: str) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def test_markdown_tables_survive_pipes_and_newlines_in_values() -> None:
    doc = sample_document(4)
    nasty = "first | second\nthird\r\nfourth \\| fifth \\"
    doc["approval"]["decisions"][0]["reason"] = nasty
    doc["implementation"]["hosts"][0]["steps"][0]["detail"] = nasty
    doc["implementation"]["hosts"][0]["steps"][3]["command_sha256"] = "ab|cd\nef"
    doc["fallback"]["events"][0]["why"] = nasty
    doc["testing"]["checks"][0]["measured"]["note"] = nasty
    markdown = render_markdown(doc)
    found = tables(markdown)
    assert len(found) >= 8
    for table in found:
        width = len(cells(table[0]))
        assert re.fullmatch(r"\|( --- \|)+", table[1]), table[1]
        for row in table[2:]:
            assert len(cells(row)) == width, row
    assert "first \\| second<br>third<br>fourth \\\\\\| fifth \\\\" in markdown
    steps = next(t for t in found if t[0].startswith("| Host | Step |"))
    assert len(steps) == 2 + steps_of(doc)


def test_markdown_has_the_sections_in_order_and_the_availability_figures() -> None:
    doc = sample_document(4)
    markdown = render_markdown(doc)
    headings = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert headings == [
        "1. Request",
        "2. Assessment",
        "3. Approval",
        "4. Implementation",
        "5. Testing",
        "6. Fall-back",
        "7. Availability",
        "8. Communication",
        "9. Audit trail",
    ]
    assert "<svg" not in markdown
    availability = markdown[markdown.index("## 7.") : markdown.index("## 8.")]
    assert "- **Lowest in service:** 2" in availability
    assert "- **Below the floor:** never (0 s)" in availability
    assert "- **Samples:** 60, every" in availability
    assert "| retries | 1 |" in availability


def test_markdown_fences_files_that_contain_backticks() -> None:
    doc = sample_document(1)
    doc["request"]["playbook"]["text"] = "run: |\n  ```\n  echo `date`\n  ```\n"
    markdown = render_markdown(doc)
    assert "````text\nrun: |\n  ```\n  echo `date`\n  ```\n````" in markdown


# --- edges -------------------------------------------------------------------------------------------


def _no_samples(doc: dict[str, Any]) -> None:
    av = doc["availability"]
    av.update(
        series=[], samples=0, lowest_in_service=None, seconds_observed=0.0, seconds_at_full_capacity=0.0
    )


def _one_sample(doc: dict[str, Any]) -> None:
    av = doc["availability"]
    av.update(series=av["series"][:1], samples=1, seconds_observed=0.0, seconds_at_full_capacity=0.0)


def _host_without_steps(doc: dict[str, Any]) -> None:
    doc["implementation"]["hosts"].append(
        {
            "name": "ehr-app-99",
            "batch": 9,
            "state": "skipped",
            "started_at": None,
            "ended_at": None,
            "version_before": None,
            "version_after": None,
            "steps": [],
        }
    )


def _no_checkpoint(doc: dict[str, Any]) -> None:
    doc["audit"].update(checkpoint=None, covered=False, first_record=None, last_record=None, records=0)


def _nothing_approved(doc: dict[str, Any]) -> None:
    doc["approval"].update(required=False, four_eyes=False, decisions=[], approver_differs=None)


def _rejected(doc: dict[str, Any]) -> None:
    doc["approval"]["decisions"][0].update(action="reject", after_batch=None)
    doc["rollout"].update(state="halted")


def _no_hosts(doc: dict[str, Any]) -> None:
    doc["implementation"]["hosts"] = []
    doc["assessment"].update(batches=[], hosts=0)
    doc["testing"]["checks"] = []
    doc["fallback"]["events"] = []
    doc["availability"].update(per_host=[], lb_errors={})
    doc["operator_actions"] = []
    doc["communication"].update(notifications=[], note="")


def _still_running(doc: dict[str, Any]) -> None:
    doc["rollout"].update(state="running", finished_at=None)
    step = doc["implementation"]["hosts"][-1]["steps"][-1]
    step.update(ended_at=None, outcome="running")
    doc["implementation"]["hosts"][-1].update(ended_at=None, state="checking")
    doc["implementation"]["hosts"][0]["steps"][1].update(outcome="interrupted", ended_at=None)
    doc["availability"]["per_host"][-1]["out_to"] = None


def _never_started(doc: dict[str, Any]) -> None:
    _no_hosts(doc)
    _no_samples(doc)
    doc["rollout"].update(state="pending", started_at=None, finished_at=None)
    doc["request"].update(change_ticket=None, reason=None)
    doc["assessment"].update(max_unavailable=None, window=None)


def _below_floor(doc: dict[str, Any]) -> None:
    series = doc["availability"]["series"]
    for sample in series[10:14]:
        sample[1] = 0
    doc["availability"].update(lowest_in_service=0, seconds_below_floor=40.0)


EDGES = {
    "no samples": _no_samples,
    "one sample": _one_sample,
    "a host with no steps": _host_without_steps,
    "no checkpoint": _no_checkpoint,
    "nothing approved": _nothing_approved,
    "rejected": _rejected,
    "no hosts": _no_hosts,
    "still running": _still_running,
    "never started": _never_started,
    "below the floor": _below_floor,
}


@pytest.mark.parametrize("edge", list(EDGES), ids=list(EDGES))
@pytest.mark.parametrize("hosts", [1, 4])
def test_edges_validate_and_render(edge: str, hosts: int) -> None:
    doc = sample_document(hosts)
    EDGES[edge](doc)
    validate(doc)
    page = render_html(doc)
    assert len(svgs(page)) == 2
    assert page.rstrip().endswith("</html>")
    assert "None" not in re.sub(r"<[^>]+>", "", page)
    markdown = render_markdown(doc)
    for table in tables(markdown):
        assert {len(cells(row)) for row in table} == {len(cells(table[0]))}
    assert "None" not in markdown
    assert json.loads(render_json(doc)) == doc


def test_no_samples_draws_a_frame_and_says_so() -> None:
    doc = sample_document(4)
    _no_samples(doc)
    capacity = svgs(render_html(doc))[1]
    assert "No samples were taken" in capacity
    assert "<polyline" not in capacity
    assert "no samples were taken" in render_markdown(doc)


def test_one_sample_draws_a_level_line_and_a_point() -> None:
    doc = sample_document(4)
    _one_sample(doc)
    capacity = svgs(render_html(doc))[1]
    line = re.search(r'<polyline class="capacity" points="([^"]+)"', capacity)
    assert line is not None
    (x0, y0), (x1, y1) = (map(float, p.split(",")) for p in line.group(1).split())
    assert y0 == y1 and x1 > x0
    assert "<circle" in capacity


def test_a_host_with_no_steps_has_its_row_and_says_so() -> None:
    doc = sample_document(4)
    _host_without_steps(doc)
    timeline = svgs(render_html(doc))[0]
    assert "ehr-app-99" in timeline and "no steps recorded" in timeline
    assert timeline.count('<rect class="step"') == steps_of(doc)


def test_interrupted_and_running_steps_are_drawn_to_the_end() -> None:
    doc = sample_document(4)
    _still_running(doc)
    timeline = svgs(render_html(doc))[0]
    assert timeline.count('stroke-dasharray="3 2"') == 2  # the legend's and the interrupted maint
    assert "interrupted, 2026-03-02T09:00:18Z to no end recorded" in timeline
    bars = re.findall(r'<rect class="step" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', timeline)
    (maint_x, maint_w), (snapshot_x, _) = bars[1], bars[2]
    # Not to the end: to where the host went on (a bar is at least 2 units wide).
    assert float(snapshot_x) <= float(maint_x) + float(maint_w) <= float(snapshot_x) + 2.1
    *_, (last_x, last_w) = bars
    assert float(last_x) + float(last_w) == pytest.approx(svg.WIDTH - 20, abs=0.11)  # running: to now


def test_below_the_floor_is_hatched_and_said_in_words() -> None:
    doc = sample_document(4)
    _below_floor(doc)
    page = render_html(doc)
    capacity = svgs(page)[1]
    assert capacity.count('fill="url(#below-floor)"') == 1 + 4  # the legend's and four samples
    assert '<span class="outcome bad">40 s</span>' in page


def test_a_long_rollout_gets_one_timeline_per_page_sized_group_of_hosts() -> None:
    doc = sample_document(2 * HOSTS_PER_TIMELINE + 3)
    pictures = svgs(render_html(doc))
    assert len(pictures) == 3 + 1
    assert sum(p.count('<rect class="step"') for p in pictures[:3]) == steps_of(doc)
    assert "hosts 101 to 103 of 103, over their own time" in render_html(doc)
    # Each group's axis spans its own hosts' steps, not the whole rollout.
    first_ticks = [re.findall(r">(\d\d:\d\d:\d\d)</text>", p)[0] for p in pictures[:3]]
    assert len(set(first_ticks)) == 3, first_ticks


def test_time_ticks_are_round_and_spaced_apart() -> None:
    for begin, span in [(0.0, 1.0), (3600.0, 59.0), (1_772_442_000.0, 740.0), (0.0, 86_400.0 * 3)]:
        ticks = svg._ticks(begin, begin + span, 800)
        assert 1 <= len(ticks) <= 800 // 85
        assert all(begin <= t <= begin + span for t in ticks)
        steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
        assert len(steps) <= 1


def test_rendering_does_not_change_the_document() -> None:
    doc = sample_document(4)
    before = copy.deepcopy(doc)
    render_html(doc)
    render_markdown(doc)
    render_json(doc)
    validate(doc)
    assert doc == before
