"""The report's two pictures as inline SVG, built here so they need no script and no fetch: the hosts'
steps over time, and the servers in service against the floor.

Both are sized by ``viewBox`` only (the page's CSS gives the width), carry ``role="img"`` and a
``<title>``, and still draw something true when there is nothing to draw (no hosts, no steps, no
samples, one sample). Every piece of text from the document goes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

WIDTH = 960
FONT = 12
CHAR = 6.9  # average advance of a 12px sans-serif character, for laying out labels
FAILED_RED = "#c1121f"

# Step names, both those the engine journals and the older spellings, with colours from the Okabe-Ito
# palette (told apart by most colour-blind readers, and in a grey print).
STEP_COLOURS = {
    "drain": "#56b4e9",
    "maint": "#999999",
    "snapshot": "#cc79a7",
    "update": "#0072b2",
    "check": "#009e73",
    "checks": "#009e73",
    "return": "#8fd694",
    "ready": "#8fd694",
    "revert": "#e69f00",
    "verify_old": "#f0e442",
    "revert-check": "#f0e442",
    "restore": "#b8860b",
    "rollback": "#d55e00",
    "delete-snapshot": "#6a4c93",
}
SPARE_COLOURS = ("#332288", "#44aa99", "#882255", "#ddcc77", "#117733", "#aa4499", "#88ccee", "#661100")
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _n(x: float) -> str:
    """A coordinate, short."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _ticks(begin: float, end: float, room: float) -> list[float]:
    """Round times between begin and end, no closer than about 85 units apart on a ``room``-wide axis."""
    span = end - begin
    most = max(2, int(room // 85))
    step = next((s for s in TICK_STEPS if span / s <= most), None)
    if step is None:
        step = TICK_STEPS[-1] * math.ceil(span / (TICK_STEPS[-1] * most))
    first = math.ceil(begin / step) * step
    return [first + i * step for i in range(int((end - first) // step) + 1)]


def step_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per step name, in order of first appearance; unknown names take the spare colours."""
    colours: dict[str, str] = {}
    spare = 0
    for name in names:
        if name in colours:
            continue
        if name in STEP_COLOURS:
            colours[name] = STEP_COLOURS[name]
        else:
            colours[name] = SPARE_COLOURS[spare % len(SPARE_COLOURS)]
            spare += 1
    return colours


def _open(height: float, title: str, desc: str) -> list[str]:
    return [
        f'<svg class="picture" role="img" viewBox="0 0 {WIDTH} {_n(height)}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" '
        f'font-size="{FONT}">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
    ]


def _legend(items: Sequence[tuple[str, str]], top: float) -> tuple[list[str], float]:
    """Legend entries (swatch markup, label) laid out in rows; returns the markup and its height."""
    out: list[str] = []
    x, y = 10.0, top
    for swatch, label in items:
        width = 22 + len(label) * CHAR + 18
        if x + width > WIDTH - 10 and x > 10:
            x, y = 10.0, y + 18
        out.append(swatch.format(x=_n(x), y=_n(y), x2=_n(x + 16), ym=_n(y + 5)))
        out.append(f'<text x="{_n(x + 22)}" y="{_n(y + 9)}">{escape(label)}</text>')
        x += width
    return out, (y - top) + 18 if items else 0.0


def _time_axis(
    ticks: Sequence[float], sx: Callable[[float], float], y_line: float, y_label: float, length: float
) -> list[str]:
    out = []
    for t in ticks:
        x = _n(sx(t))
        out.append(f'<line x1="{x}" x2="{x}" y1="{_n(y_line)}" y2="{_n(y_line + length)}" stroke="#ddd"/>')
        out.append(f'<text x="{x}" y="{_n(y_label)}" text-anchor="middle" fill="#333">{_clock(t)}</text>')
    return out


def timeline_svg(hosts: Sequence[Mapping[str, Any]], *, begin: float | None, end: float | None) -> str:
    """One row per host, each step attempt a bar from its start to its end (see ``_drawn_end`` for a
    step without one). Failed steps are outlined in solid red, interrupted ones in dashed red.
    ``begin``/``end`` widen the time axis (the rollout's own start and finish); the axis always covers
    every step."""
    label_w, right, row_h, bar_h = 150.0, 20.0, 18.0, 12.0
    x0, x1 = label_w + 10, WIDTH - right
    steps = [step for host in hosts for step in host["steps"]]
    times = [t for t in (begin, end) if t is not None]
    times += [step["started_at"] for step in steps]
    times += [step["ended_at"] for step in steps if step["ended_at"] is not None]
    lo = min(times, default=0.0)
    hi = max(times, default=lo)
    if hi - lo < 1.0:
        lo, hi = lo - 0.5, hi + 0.5

    def sx(t: float) -> float:
        return x0 + (t - lo) / (hi - lo) * (x1 - x0)

    colours = step_colours(step["step"] for step in steps)
    swatches = [
        (f'<rect x="{{x}}" y="{{y}}" width="16" height="10" fill="{colour}"/>', name)
        for name, colour in colours.items()
    ]
    swatches.append(
        (
            f'<rect x="{{x}}" y="{{y}}" width="16" height="10" fill="#fff" stroke="{FAILED_RED}" '
            'stroke-width="2"/>',
            "failed (solid red outline)",
        )
    )
    swatches.append(
        (
            f'<rect x="{{x}}" y="{{y}}" width="16" height="10" fill="#fff" stroke="{FAILED_RED}" '
            'stroke-width="2" stroke-dasharray="3 2"/>',
            "interrupted (dashed red outline)",
        )
    )
    title = f"Timeline of the rollout's steps on {len(hosts)} host(s), {_iso(lo)} to {_iso(hi)}"
    desc = (
        "One row per host, in batch order; each bar is one attempt of one step, from its start to its "
        "end, coloured by step; failed attempts are outlined in solid red, interrupted ones in dashed "
        "red. Shaded bands alternate by batch. Axis: time of day, UTC."
    )
    legend, legend_h = _legend(swatches, 8)
    axis_top = 8 + legend_h + 16
    rows_top = axis_top + 8
    rows_h = max(len(hosts), 1) * row_h
    bottom = rows_top + rows_h
    height = bottom + 24
    ticks = _ticks(lo, hi, x1 - x0)
    out = _open(height, title, desc)
    out += legend
    # Batch bands first, so the time grid and the bars are drawn over them.
    shade = False
    previous_batch: Any = object()
    for row, host in enumerate(hosts):
        y = rows_top + row * row_h
        if host["batch"] != previous_batch:
            previous_batch = host["batch"]
            shade = not shade
            if row:
                out.append(f'<line x1="0" x2="{WIDTH}" y1="{_n(y)}" y2="{_n(y)}" stroke="#bbb"/>')
        if shade:
            out.append(f'<rect x="0" y="{_n(y)}" width="{WIDTH}" height="{_n(row_h)}" fill="#f2f2f2"/>')
    out.append(f'<text x="10" y="{_n(axis_top)}" fill="#333">UTC</text>')
    out += _time_axis(ticks, sx, rows_top, axis_top, rows_h)
    for t in ticks:
        out.append(
            f'<text x="{_n(sx(t))}" y="{_n(bottom + 16)}" text-anchor="middle" fill="#333">{_clock(t)}</text>'
        )
    if not hosts:
        out.append(f'<text x="{_n(x0)}" y="{_n(rows_top + 12)}" fill="#555">No hosts in this rollout.</text>')
    for row, host in enumerate(hosts):
        y = rows_top + row * row_h
        label = f"{_clip(host['name'], 17)}  b{host['batch']}"
        tip = escape(f"{host['name']}, batch {host['batch']}, {host['state']}")
        out.append(f'<text x="10" y="{_n(y + bar_h + 1)}"><title>{tip}</title>{escape(label)}</text>')
        if not host["steps"]:
            out.append(f'<text x="{_n(x0 + 4)}" y="{_n(y + bar_h + 1)}" fill="#555">no steps recorded</text>')
        for step in host["steps"]:
            stop = _drawn_end(step, host, hi)
            out.append(
                _bar(step, sx, stop, y + (row_h - bar_h) / 2, bar_h, colours[step["step"]], host["name"])
            )
    out.append("</svg>")
    return "\n".join(out)


def _drawn_end(step: Mapping[str, Any], host: Mapping[str, Any], hi: float) -> float:
    """Where a step's bar ends: its end; for one still running, the axis' end (now); for one interrupted
    without an end, where the host went on (its next step, or the host's own end), so the bar does not
    claim the step ran on after the host had left it."""
    if step["ended_at"] is not None:
        return float(step["ended_at"])
    if step["outcome"] == "running":
        return hi
    start = step["started_at"]
    later = [s["started_at"] for s in host["steps"] if s["started_at"] > start]
    if later:
        return float(min(later))
    return float(host["ended_at"]) if host["ended_at"] is not None and host["ended_at"] > start else hi


def _bar(
    step: Mapping[str, Any],
    sx: Callable[[float], float],
    stop: float,
    y: float,
    h: float,
    colour: str,
    host: str,
) -> str:
    start = step["started_at"]
    x = sx(start)
    width = max(sx(stop) - x, 2.0)
    outline = ""
    if step["outcome"] == "failed":
        outline = f' stroke="{FAILED_RED}" stroke-width="2"'
    elif step["outcome"] == "interrupted":
        outline = f' stroke="{FAILED_RED}" stroke-width="2" stroke-dasharray="3 2"'
    ended = _iso(step["ended_at"]) if step["ended_at"] is not None else "no end recorded"
    tip = f"{host} {step['step']} attempt {step['attempt']}: {step['outcome']}, {_iso(start)} to {ended}"
    return (
        f'<rect class="step" x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(h)}" fill="{colour}"'
        f"{outline}><title>{escape(tip)}</title></rect>"
    )


def capacity_svg(availability: Mapping[str, Any]) -> str:
    """Servers in service over the sampled window as a step line, the floor as a dashed line, the pool's
    size as a dotted one, and the time below the floor shaded."""
    series: Sequence[Sequence[Any]] = availability["series"]
    servers, floor = int(availability["servers"]), int(availability["floor"])
    height, left, right, top, bottom = 300.0, 60.0, 20.0, 40.0, 260.0
    x0, x1 = left, WIDTH - right
    title = f"Servers in service against the floor of {floor} (pool of {servers}), {len(series)} sample(s)"
    desc = (
        "Step line: servers in service at each sample. Dashed line: the floor that had to stay in "
        "service. Dotted line: the pool's size. Hatched: below the floor. Axis: time of day, UTC."
    )
    out = _open(height, title, desc)
    out.append(
        '<defs><pattern id="below-floor" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde2e4"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{FAILED_RED}" stroke-width="1.5"/></pattern></defs>'
    )
    legend = [
        ('<line x1="{x}" x2="{x2}" y1="{ym}" y2="{ym}" stroke="#0072b2" stroke-width="2.5"/>', "in service"),
        (
            '<line x1="{x}" x2="{x2}" y1="{ym}" y2="{ym}" stroke="#000" stroke-width="1.5" '
            'stroke-dasharray="6 4"/>',
            f"floor ({floor})",
        ),
        (
            '<line x1="{x}" x2="{x2}" y1="{ym}" y2="{ym}" stroke="#777" stroke-width="1.5" '
            'stroke-dasharray="1 3"/>',
            f"pool ({servers})",
        ),
        ('<rect x="{x}" y="{y}" width="16" height="10" fill="url(#below-floor)"/>', "below the floor"),
    ]
    out += _legend(legend, 8)[0]
    values = [int(sample[1]) for sample in series]
    y_max = max([servers, floor, 1, *values])

    def sy(n: float) -> float:
        return bottom - n / y_max * (bottom - top)

    step = max(1, math.ceil(y_max / 8))
    for n in range(0, y_max + 1, step):
        out.append(f'<line x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(sy(n))}" y2="{_n(sy(n))}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{_n(x0 - 8)}" y="{_n(sy(n) + 4)}" text-anchor="end">{n}</text>')
    out.append(
        f'<text transform="translate(14 {_n((top + bottom) / 2)}) rotate(-90)" text-anchor="middle">'
        "servers in service</text>"
    )
    out.append(
        f'<rect x="{_n(x0)}" y="{_n(top)}" width="{_n(x1 - x0)}" height="{_n(bottom - top)}" '
        'fill="none" stroke="#999"/>'
    )
    if not series:
        out.append(
            f'<text x="{_n((x0 + x1) / 2)}" y="{_n(top + 28)}" text-anchor="middle" fill="#333" '
            'stroke="#fff" stroke-width="4" paint-order="stroke">'
            "No samples were taken: nothing to draw.</text>"
        )
    else:
        times = [float(sample[0]) for sample in series]
        lo, hi = times[0], times[-1]
        if hi - lo < 1.0:
            pad = max(float(availability["interval"]), 1.0)
            lo, hi = lo - pad, hi + pad

        def sx(t: float) -> float:
            return x0 + (t - lo) / (hi - lo) * (x1 - x0)

        for (t, n), nxt in zip(zip(times, values, strict=True), [*times[1:], None], strict=True):
            if n < floor:
                stop = sx(nxt) if nxt is not None else min(sx(t) + 4, x1)
                out.append(
                    f'<rect x="{_n(sx(t))}" y="{_n(sy(floor))}" width="{_n(max(stop - sx(t), 1))}" '
                    f'height="{_n(sy(0) - sy(floor))}" fill="url(#below-floor)"/>'
                )
        points: list[str] = []
        if len(series) == 1:
            points = [f"{_n(x0)},{_n(sy(values[0]))}", f"{_n(x1)},{_n(sy(values[0]))}"]
            out.append(f'<circle cx="{_n(sx(times[0]))}" cy="{_n(sy(values[0]))}" r="4" fill="#0072b2"/>')
        else:
            for i, (t, n) in enumerate(zip(times, values, strict=True)):
                if i:
                    points.append(f"{_n(sx(t))},{_n(sy(values[i - 1]))}")
                points.append(f"{_n(sx(t))},{_n(sy(n))}")
        out.append(
            f'<polyline class="capacity" points="{" ".join(points)}" fill="none" stroke="#0072b2" '
            'stroke-width="2.5" stroke-linejoin="miter"/>'
        )
        out += _time_axis(_ticks(lo, hi, x1 - x0), sx, bottom, bottom + 16, 5)
    floor_y, pool_y = sy(floor), sy(servers)
    out.append(
        f'<line x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(pool_y)}" y2="{_n(pool_y)}" stroke="#777" '
        'stroke-width="1.5" stroke-dasharray="1 3"/>'
    )
    out.append(
        f'<line class="floor" x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(floor_y)}" y2="{_n(floor_y)}" '
        'stroke="#000" stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    # A white halo keeps the label readable where the step line runs through it.
    out.append(
        f'<text x="{_n(x0 + 6)}" y="{_n(floor_y - 4)}" fill="#000" stroke="#fff" stroke-width="3" '
        f'paint-order="stroke">floor {floor}</text>'
    )
    out.append(
        f'<text x="{_n(WIDTH / 2)}" y="{_n(height - 8)}" text-anchor="middle" fill="#333">'
        "time of day (UTC)</text>"
    )
    out.append("</svg>")
    return "\n".join(out)
