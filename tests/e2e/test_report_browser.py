"""The change report's HTML in a real headless Chromium (``/usr/bin/chromium``, driven from its command
line: Playwright is not installed here), from a ``file://`` URL with no network.

It proves what a reader and an auditor see: the page renders (a screenshot with the timeline's colours
in it), the browser parsed both pictures as SVG with their shapes, nothing was fetched or blocked (the
console has no Content-Security-Policy complaint), and the printed PDF runs to several pages without
cutting a table row across two of them, repeats the steps table's header on every page it continues
on, and shows both pictures drawn.

The screenshot, PDF, page images and HTML go to ``$ORCH_TEST_OUTPUT`` if set, else to pytest's tmp
folder; their paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from orchestrator.changereport.html import render_html
from orchestrator.changereport.svg import STEP_COLOURS
from orchestrator.changereport.text import iso_utc
from tests.unit.report_sample import sample_document

pytestmark = [pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
HOSTS = 12  # long enough that the steps table runs over several pages
WINDOW = (1280, 3000)  # tall enough to hold the header, the request and the timeline
CALL_TIMEOUT = 60.0
# LAB.md: without these Chromium reaches for outside hosts. The resolver rule makes any name lookup
# fail, so even a page that tried could not fetch anything.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _missing_tools() -> str:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    absent = [tool for tool in ("pdfinfo", "pdftotext", "pdftoppm") if shutil.which(tool) is None]
    return f"{', '.join(absent)} not installed (apt-get install poppler-utils)" if absent else ""


@dataclass(frozen=True)
class Rendered:
    doc: dict[str, Any]
    html: Path
    screenshot: Path
    pdf: Path
    dom: str
    console: str
    out: Path


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run, in its own process group so a hang is killed whole."""
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"chromium did not finish within {CALL_TIMEOUT:g}s: {' '.join(command)}")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, (
        f"chromium exited {result.returncode}: {' '.join(command)}\n{stderr[-2000:]}"
    )
    return result


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=CALL_TIMEOUT).stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    missing = _missing_tools()
    if missing:
        pytest.skip(missing)
    out = (
        Path(os.environ["ORCH_TEST_OUTPUT"])
        if os.environ.get("ORCH_TEST_OUTPUT")
        else tmp_path_factory.mktemp("report")
    )
    out.mkdir(parents=True, exist_ok=True)
    doc = sample_document(HOSTS)
    html = out / "change-report.html"
    html.write_text(render_html(doc), encoding="utf-8")
    url = html.resolve().as_uri()
    screenshot, pdf = out / "change-report.png", out / "change-report.pdf"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        chromium([f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url], Path(profile))
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url], Path(profile))
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        dumped = chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", url], Path(profile))
    print(f"\nchange report: {html}\nscreenshot: {screenshot}\nPDF: {pdf}")
    yield Rendered(doc, html, screenshot, pdf, dumped.stdout, dumped.stderr, out)


# --- images without Pillow ---------------------------------------------------------------------------


def decode_png(path: Path) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and the rows of an 8-bit RGB or RGBA PNG, as Chromium writes them."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, bytearray()
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if chunk == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format: depth {depth}, colour {colour}"
            bpp = 3 if colour == 2 else 4
        elif chunk == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    low7 = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 2:  # Up, the common one: add the row above byte-wise, all bytes at once
            a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            line = bytearray((((a & low7) + (b & low7)) ^ ((a ^ b) & high)).to_bytes(stride, "big"))
        elif kind in (1, 3, 4):
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                up = prev[x]
                if kind == 1:
                    line[x] = (line[x] + left) & 255
                elif kind == 3:
                    line[x] = (line[x] + (left + up) // 2) & 255
                else:
                    corner = prev[x - bpp] if x >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    line[x] = (
                        line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                    ) & 255
        rows.append(bytes(line))
        prev = bytes(line)
    return width, height, bpp, rows


def read_ppm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    match = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
    assert match, f"{path} is not a binary PPM"
    width, height = int(match.group(1)), int(match.group(2))
    return width, height, data[match.end() : match.end() + width * height * 3]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


# --- the PDF as text, page by page --------------------------------------------------------------------


def pages_text(pdf: Path) -> list[list[str]]:
    text = run("pdftotext", "-layout", str(pdf), "-")
    return [page.splitlines() for page in text.split("\f") if page.strip()]


@dataclass(frozen=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float


def page_words(pdf: Path) -> list[list[Word]]:
    """Every word of every page with its box, in points from the top left."""
    xhtml = run("pdftotext", "-bbox", str(pdf), "-")
    pages = []
    for page in re.findall(r"<page\b.*?</page>", xhtml, flags=re.S):
        words = [
            Word(w[4], float(w[0]), float(w[1]), float(w[2]), float(w[3]))
            for w in re.findall(
                r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', page
            )
        ]
        pages.append(words)
    return pages


def rasterise(pdf: Path, page: int, out: Path, dpi: int = 144) -> tuple[int, int, bytes]:
    """The page as pixels (a PPM in a temporary folder), and a small PNG of it in ``out`` to look at."""
    pages = ("-f", str(page), "-l", str(page))
    run("pdftoppm", *pages, "-r", "60", "-png", "-singlefile", str(pdf), str(out / f"page-{page:02d}"))
    with tempfile.TemporaryDirectory(prefix="report-page-") as folder:
        stem = Path(folder) / "page"
        run("pdftoppm", *pages, "-r", str(dpi), "-singlefile", str(pdf), str(stem))
        return read_ppm(stem.with_suffix(".ppm"))


def count_in_box(
    image: tuple[int, int, bytes], box: tuple[float, float, float, float], scale: float, colours: list[str]
) -> dict[str, int]:
    """Pixels near each colour (and not white at all, as "ink") inside a box given in points."""
    width, height, pixels = image
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    wanted = {c: hex_rgb(c) for c in colours}
    counts = dict.fromkeys([*colours, "ink"], 0)
    for y in range(max(y0, 0), min(y1, height)):
        row = y * width * 3
        for x in range(max(x0, 0), min(x1, width)):
            i = row + x * 3
            pixel = (pixels[i], pixels[i + 1], pixels[i + 2])
            if min(pixel) < 235:
                counts["ink"] += 1
            for name, rgb in wanted.items():
                if near(pixel, rgb):
                    counts[name] += 1
    return counts


# --- the tests ----------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_page_renders_with_its_pictures_in_the_screenshot(rendered: Rendered) -> None:
    size = rendered.screenshot.stat().st_size
    assert size > 10_000, f"{rendered.screenshot}: only {size} bytes"
    width, height, bpp, rows = decode_png(rendered.screenshot)
    assert (width, height) == WINDOW
    grid = {rows[y][x * bpp : x * bpp + 3] for y in range(0, height, 37) for x in range(0, width, 23)}
    assert len(grid) > 8, f"the screenshot is (nearly) one colour: {len(grid)} colours on a grid"
    assert bytes((255, 255, 255)) in grid  # the page's white
    # The timeline's bars: each of these step colours covers many pixels somewhere on the screen (a
    # byte search finds them fast; a pure-white page could not hold them).
    screen = b"".join(rows)
    found = {name: screen.count(bytes(hex_rgb(STEP_COLOURS[name]))) for name in ("drain", "update", "check")}
    assert all(count > 200 for count in found.values()), found


class Shapes(HTMLParser):
    """The SVG elements of the browser's DOM and the shapes inside each."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, Any]] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svgs.append({"attrs": dict(attrs), "rect": 0, "step": 0, "polyline": 0, "title": 0})
            self.depth += 1
        elif self.depth:
            current = self.svgs[-1]
            if tag in ("rect", "polyline", "title"):
                current[tag] += 1
            if tag == "rect" and dict(attrs).get("class") == "step":
                current["step"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.depth -= 1


@pytest.mark.timeout(120)
def test_the_browser_built_both_pictures_and_fetched_nothing(rendered: Rendered) -> None:
    shapes = Shapes()
    shapes.feed(rendered.dom)
    assert len(shapes.svgs) == 2, shapes.svgs
    timeline, capacity = shapes.svgs
    steps = sum(len(h["steps"]) for h in rendered.doc["implementation"]["hosts"])
    assert timeline["step"] == steps and timeline["title"] >= 1 + steps
    assert capacity["polyline"] == 1 and capacity["rect"] >= 1
    for svg in shapes.svgs:
        assert svg["attrs"].get("role") == "img" and svg["attrs"].get("viewbox", svg["attrs"].get("viewBox"))
    complaints = [
        line
        for line in rendered.console.splitlines()
        if "Content Security Policy" in line or "net::ERR" in line or "Failed to load" in line
    ]
    assert not complaints, "\n".join(complaints)


def _row_lines(lines: list[str], start: int, is_row: re.Pattern[str]) -> list[str]:
    """A table row's lines as pdftotext lays them out: its first, and those up to the next row."""
    found = [lines[start]]
    for line in lines[start + 1 : start + 8]:
        if not line.strip() or is_row.match(line):
            break
        found.append(line)
    return found


@pytest.mark.timeout(120)
def test_the_pdf_keeps_every_host_row_whole_on_one_page(rendered: Rendered) -> None:
    info = run("pdfinfo", str(rendered.pdf))
    found = re.search(r"^Pages:\s+(\d+)", info, flags=re.M)
    assert found, info
    pages = int(found.group(1))
    assert pages >= 5, f"{rendered.pdf}: {pages} pages"
    text = pages_text(rendered.pdf)
    assert len(text) == pages
    hosts = rendered.doc["implementation"]["hosts"]
    is_row = re.compile(rf"^\s*\S+\s+\d+\s+[a-z_]+\s+{ISO}")
    header = re.compile(r"^\s*Host\s+Batch\s+State\s+Started / ended \(UTC\)\s+Took\s+Version before")
    for number, lines in enumerate(text, 1):
        for index in (i for i, line in enumerate(lines) if header.match(line)):
            after = next((line for line in lines[index + 1 :] if line.strip()), "")
            assert is_row.match(after), f"page {number}: the hosts table's header is followed by {after!r}"
    for host in hosts:
        first = re.compile(rf"^\s*{re.escape(host['name'])}\s+{host['batch']}\s+{host['state']}\s+{ISO}")
        where = [
            (n, i) for n, lines in enumerate(text, 1) for i, line in enumerate(lines) if first.match(line)
        ]
        assert len(where) == 1, f"{host['name']}'s row in the hosts table: found at (page, line) {where}"
        page, index = where[0]
        row = " ".join(_row_lines(text[page - 1], index, is_row))
        assert iso_utc(host["started_at"]) in row and iso_utc(host["ended_at"]) in row, (
            f"{host['name']}'s row is cut at the end of page {page}: {row!r}"
        )


@pytest.mark.timeout(120)
def test_the_pdf_steps_table_repeats_its_header_and_cuts_no_row(rendered: Rendered) -> None:
    text = pages_text(rendered.pdf)
    header = re.compile(
        r"^\s*Host\s+Step\s+Started / ended \(UTC\)\s+Took\s+Outcome\s+Command / output SHA-256"
    )
    is_row = re.compile(rf"^\s*(\S+)\s+([a-z][a-z_-]*)\s+({ISO})\s")
    expected = {
        (h["name"], s["step"], iso_utc(s["started_at"])): s
        for h in rendered.doc["implementation"]["hosts"]
        for s in h["steps"]
    }
    seen: list[tuple[str, str, str]] = []
    pages_with_rows = []
    for number, lines in enumerate(text, 1):
        # A steps-table row: host, step, start, and "try N" on its next lines (which a fall-back row,
        # host, what, at, does not have).
        rows = [
            (i, m)
            for i, line in enumerate(lines)
            if (m := is_row.match(line))
            and m.groups() in expected
            and re.search(r"\btry \d+\b", " ".join(_row_lines(lines, i, is_row)[1:]))
        ]
        if not rows:
            continue
        pages_with_rows.append(number)
        headers = [i for i, line in enumerate(lines) if header.match(line)]
        assert headers and headers[0] < rows[0][0], f"page {number} holds steps but no header above them"
        after_header = next(i for i in range(headers[0] + 1, len(lines)) if lines[i].strip())
        assert after_header == rows[0][0], (
            f"page {number} goes on with the rest of a row cut at the end of the page before: "
            f"{lines[after_header]!r}"
        )
        continued = not any(line.strip() == "Steps" for line in lines[: rows[0][0]])
        if continued:
            first_text = next(i for i, line in enumerate(lines) if line.strip())
            assert first_text == headers[0], (
                f"page {number} continues the steps table without its header first"
            )
        for index, match in rows:
            key = (match.group(1), match.group(2), match.group(3))
            step = expected[key]
            whole = " ".join(_row_lines(lines, index, is_row))
            assert f"try {step['attempt']}" in whole and iso_utc(step["ended_at"]) in whole, (
                f"the row of {key} is cut at the end of page {number}: {whole!r}"
            )
            seen.append(key)
    assert sorted(seen) == sorted(expected), "some step rows are missing from the PDF or appear twice"
    assert len(pages_with_rows) >= 2, f"the steps table should run over several pages, not {pages_with_rows}"


@pytest.mark.timeout(120)
def test_the_pdf_pictures_are_drawn(rendered: Rendered) -> None:
    words = page_words(rendered.pdf)
    hosts = rendered.doc["implementation"]["hosts"]
    batches = {f"b{h['batch']}" for h in hosts}
    scale = 144 / 72

    # The timeline: the rows between its first and last host label, right of the labels.
    timeline_page = next(
        n for n, page in enumerate(words, 1) if sum(w.text in batches for w in page) >= len(hosts)
    )
    labels = [w for w in words[timeline_page - 1] if w.text in batches]
    box = (max(w.x1 for w in labels) + 4, min(w.y0 for w in labels), 595.0, max(w.y1 for w in labels))
    image = rasterise(rendered.pdf, timeline_page, rendered.out)
    colours = [STEP_COLOURS[name] for name in ("drain", "update", "check", "revert")] + ["#c1121f"]
    counts = count_in_box(image, box, scale, colours)
    print(f"timeline on page {timeline_page}, box {box}: {counts}")
    assert all(counts[c] > 20 for c in colours), counts

    # The capacity picture: between its legend ("pool (N)") and its axis title ("time of day (UTC)").
    servers = f"({rendered.doc['availability']['servers']})"

    def after(page: list[Word], first: str, second: str) -> Word | None:
        return next((b for a, b in itertools.pairwise(page) if a.text == first and b.text == second), None)

    capacity_page = next(
        n for n, page in enumerate(words, 1) if after(page, "pool", servers) and after(page, "day", "(UTC)")
    )
    page = words[capacity_page - 1]
    top, bottom = after(page, "pool", servers), after(page, "day", "(UTC)")
    assert top is not None and bottom is not None and top.y0 < bottom.y0
    box = (30.0, top.y1 + 2, 565.0, bottom.y0 - 2)
    counts = count_in_box(rasterise(rendered.pdf, capacity_page, rendered.out), box, scale, ["#0072b2"])
    print(f"capacity on page {capacity_page}, box {box}: {counts}")
    assert counts["#0072b2"] > 800, counts  # the step line, across the whole window
    assert counts["ink"] > 3000, counts
