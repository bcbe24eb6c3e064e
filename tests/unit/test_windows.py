"""Maintenance windows: open or closed at given instants, when they close and next open, across weeks,
midnight and daylight-saving changes (Europe/Paris 2026-03-29 and 2026-10-25, America/New_York 2026-03-08
and 2026-11-01), every kind of bad input, and operator times read in a window's zone (schedule --at).
Time is frozen by passing datetimes: nothing reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pydantic
import pytest

from orchestrator.model.playbook import WindowSpec
from orchestrator.model.windows import Range, Window, parse_range, parse_window, to_utc
from orchestrator.schedule import parse_at

PARIS = ZoneInfo("Europe/Paris")


def u(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


WEEKEND = parse_window("Europe/Paris", ["Sat 01:00-05:00", "Sun 01:00-05:00"])
NIGHTS = parse_window("Europe/Paris", ["Mon-Fri 22:00-06:00"])
SAT_NIGHT = parse_window("Europe/Paris", ["Sat 22:00-06:00"])  # the night of each DST change
GAP_START = parse_window("Europe/Paris", ["Sun 02:30-04:00"])
GAP_END = parse_window("Europe/Paris", ["Sun 01:00-02:30"])
TOUCHING = parse_window("Europe/Paris", ["Sun 01:00-02:30", "Sun 02:30-04:00"])
NEW_YORK = parse_window("America/New_York", ["Sun 01:00-05:00"])
NY_GAP = parse_window("America/New_York", ["Sun 02:30-03:30"])
WRAP = parse_window("UTC", ["Fri-Mon 23:00-01:00"])
DAILY = parse_window("UTC", ["daily 02:00-04:00"])

# (case, window, instant in UTC, closes_at or None when closed, next_open)
CASES: list[tuple[str, Window, datetime, datetime | None, datetime]] = [
    # winter (CET, UTC+1): Sat 01:00-05:00 is 00:00-04:00 UTC
    ("opens at its start", WEEKEND, u(1, 3, 0), u(1, 3, 4), u(1, 3, 0)),
    ("a minute before the start", WEEKEND, u(1, 2, 23, 59), None, u(1, 3, 0)),
    ("last minute", WEEKEND, u(1, 3, 3, 59), u(1, 3, 4), u(1, 3, 3, 59)),
    ("closed at its end", WEEKEND, u(1, 3, 4), None, u(1, 4, 0)),
    ("Sunday's range", WEEKEND, u(1, 4, 2), u(1, 4, 4), u(1, 4, 2)),
    ("Monday: next Saturday", WEEKEND, u(1, 5, 12), None, u(1, 10, 0)),
    ("across the new year", WEEKEND, u(12, 31, 12), None, u(1, 2, 0, year=2027)),
    # summer (CEST, UTC+2): 23:00-03:00 UTC, starting the evening before in UTC
    ("summer start, the day before in UTC", WEEKEND, u(7, 3, 23), u(7, 4, 3), u(7, 3, 23)),
    ("summer, before the start", WEEKEND, u(7, 3, 22, 59), None, u(7, 3, 23)),
    # spring forward, Sun 2026-03-29: 01:00 CET (00:00 UTC) to 05:00 CEST (03:00 UTC): 3 hours
    ("spring forward: opens in CET", WEEKEND, u(3, 29, 0), u(3, 29, 3), u(3, 29, 0)),
    ("spring forward: open across the change", WEEKEND, u(3, 29, 1, 30), u(3, 29, 3), u(3, 29, 1, 30)),
    ("spring forward: closes in CEST", WEEKEND, u(3, 29, 3), None, u(4, 3, 23)),
    ("spring forward: the Saturday before", WEEKEND, u(3, 28, 3, 59), u(3, 28, 4), u(3, 28, 3, 59)),
    # fall back, Sun 2026-10-25: 01:00 CEST (Sat 23:00 UTC) to 05:00 CET (04:00 UTC): 5 hours
    ("fall back: opens in CEST", WEEKEND, u(10, 24, 23), u(10, 25, 4), u(10, 24, 23)),
    ("fall back: in the repeated hour", WEEKEND, u(10, 25, 0, 30), u(10, 25, 4), u(10, 25, 0, 30)),
    ("fall back: the last hour, in CET", WEEKEND, u(10, 25, 3, 30), u(10, 25, 4), u(10, 25, 3, 30)),
    ("fall back: closes in CET", WEEKEND, u(10, 25, 4), None, u(10, 31, 0)),
    # across midnight: Mon-Fri 22:00-06:00 opens Monday evening, the last closes Saturday morning
    ("night opens Monday", NIGHTS, u(1, 5, 21), u(1, 6, 5), u(1, 5, 21)),
    ("night, next morning", NIGHTS, u(1, 6, 4, 59), u(1, 6, 5), u(1, 6, 4, 59)),
    ("Friday's night ends Saturday", NIGHTS, u(1, 10, 4, 59), u(1, 10, 5), u(1, 10, 4, 59)),
    ("Saturday evening: wait for Monday", NIGHTS, u(1, 10, 21), None, u(1, 12, 21)),
    ("Monday morning was Sunday's night: closed", NIGHTS, u(1, 5, 4), None, u(1, 5, 21)),
    ("daytime", NIGHTS, u(1, 7, 12), None, u(1, 7, 21)),
    ("next opening after the spring change", NIGHTS, u(3, 28, 12), None, u(3, 30, 20)),
    ("Friday night before the spring change", NIGHTS, u(3, 28, 4, 59), u(3, 28, 5), u(3, 28, 4, 59)),
    # a range spanning the change: Sat 22:00-Sun 06:00 lasts 7 hours in spring, 9 in autumn
    ("spans spring forward", SAT_NIGHT, u(3, 28, 21), u(3, 29, 4), u(3, 28, 21)),
    ("spans spring forward, after", SAT_NIGHT, u(3, 29, 4), None, u(4, 4, 20)),
    ("spans fall back", SAT_NIGHT, u(10, 24, 20), u(10, 25, 5), u(10, 24, 20)),
    ("spans fall back, its last hour", SAT_NIGHT, u(10, 25, 4, 30), u(10, 25, 5), u(10, 25, 4, 30)),
    # a start that does not exist (02:30 on 2026-03-29) opens at the change, 03:00 CEST = 01:00 UTC
    ("gap start: not before the change", GAP_START, u(3, 29, 0, 59), None, u(3, 29, 1)),
    ("gap start: opens at the change", GAP_START, u(3, 29, 1), u(3, 29, 2), u(3, 29, 1)),
    ("gap start, an ordinary week", GAP_START, u(3, 22, 1, 30), u(3, 22, 3), u(3, 22, 1, 30)),
    # a start that happens twice (02:30 on 2026-10-25) is the first one: 00:30 UTC; ends 04:00 CET
    ("fall back start: first occurrence", GAP_START, u(10, 25, 0, 30), u(10, 25, 3), u(10, 25, 0, 30)),
    ("fall back start: not before it", GAP_START, u(10, 25, 0, 29), None, u(10, 25, 0, 30)),
    # an end that does not exist closes at the change; one that happens twice is the second one
    ("gap end: closes at the change", GAP_END, u(3, 29, 0, 59), u(3, 29, 1), u(3, 29, 0, 59)),
    ("gap end: closed after", GAP_END, u(3, 29, 1), None, u(4, 4, 23)),
    ("fall back end: second occurrence", GAP_END, u(10, 25, 1, 29), u(10, 25, 1, 30), u(10, 25, 1, 29)),
    # touching ranges are one open period: closes_at is when the window really closes
    ("touching ranges", TOUCHING, u(1, 4, 0, 10), u(1, 4, 3), u(1, 4, 0, 10)),
    ("touching ranges across the gap", TOUCHING, u(3, 29, 0, 10), u(3, 29, 2), u(3, 29, 0, 10)),
    ("overlapping on the repeated hour", TOUCHING, u(10, 25, 0, 10), u(10, 25, 3), u(10, 25, 0, 10)),
    # New York changes on other dates (2026-03-08, 2026-11-01) and at 02:00 local
    ("NY winter: 06:00-10:00 UTC", NEW_YORK, u(1, 4, 6), u(1, 4, 10), u(1, 4, 6)),
    ("NY spring forward: 3 hours", NEW_YORK, u(3, 8, 6), u(3, 8, 9), u(3, 8, 6)),
    ("NY in summer time while Paris is not", NEW_YORK, u(3, 22, 5), u(3, 22, 9), u(3, 22, 5)),
    ("NY before the start", NEW_YORK, u(3, 22, 4, 59), None, u(3, 22, 5)),
    ("NY fall back: 5 hours", NEW_YORK, u(11, 1, 5), u(11, 1, 10), u(11, 1, 5)),
    ("NY on Paris's fall back day: 4 hours", NEW_YORK, u(10, 25, 5), u(10, 25, 9), u(10, 25, 5)),
    ("NY gap start opens at 03:00 EDT", NY_GAP, u(3, 8, 6, 59), None, u(3, 8, 7)),
    ("NY gap start", NY_GAP, u(3, 8, 7), u(3, 8, 7, 30), u(3, 8, 7)),
    # a span of days wrapping through Sunday, in UTC
    ("wrap: Monday's range", WRAP, u(1, 5, 23, 30), u(1, 6, 1), u(1, 5, 23, 30)),
    ("wrap: Tuesday closed", WRAP, u(1, 6, 23, 30), None, u(1, 9, 23)),
    ("daily", DAILY, u(1, 7, 3), u(1, 7, 4), u(1, 7, 3)),
    ("daily, after", DAILY, u(1, 7, 4), None, u(1, 8, 2)),
]


@pytest.mark.parametrize(
    ("window", "at", "closes", "opens"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_window_at(window: Window, at: datetime, closes: datetime | None, opens: datetime) -> None:
    assert window.is_open(at) is (closes is not None)
    assert window.closes_at(at) == closes
    assert window.time_left(at) == (closes - at if closes else timedelta(0))
    assert window.next_open(at) == opens
    for result in (window.closes_at(at), window.next_open(at)):
        assert result is None or result.utcoffset() == timedelta(0)


def test_instants_in_other_zones_are_the_same_instants() -> None:
    at = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=1)  # the second 02:30, 01:30 UTC
    assert WEEKEND.is_open(at)
    assert WEEKEND.closes_at(at) == u(10, 25, 4)
    assert WEEKEND.time_left(at) == timedelta(hours=2, minutes=30)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="has no time zone; an aware datetime"):
        WEEKEND.is_open(datetime(2026, 1, 3, 2))


SWEEP = [u(3, 21) + timedelta(minutes=41 * n) for n in range(540)] + [
    u(10, 17) + timedelta(minutes=41 * n) for n in range(560)
]


@pytest.mark.parametrize("window", [WEEKEND, NIGHTS, GAP_START, GAP_END, TOUCHING, NEW_YORK, WRAP])
def test_answers_agree_with_each_other_around_both_changes(window: Window) -> None:
    """Every 41 minutes for ~2 weeks around each change: next_open/closes_at are where is_open flips."""
    second = timedelta(seconds=1)
    for at in SWEEP:
        closes, opens = window.closes_at(at), window.next_open(at)
        if window.is_open(at):
            assert opens == at and closes is not None and closes > at
            assert window.is_open(closes - second) and not window.is_open(closes), at
            assert window.time_left(at) == closes - at
        else:
            assert closes is None and opens > at and window.time_left(at) == timedelta(0)
            assert window.is_open(opens) and not window.is_open(opens - second), at


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "described"),
    [
        ("Sat 01:00-05:00", (5,), 60, 300, "Sat 01:00-05:00"),
        ("mon-FRI 22:00-06:00", (0, 1, 2, 3, 4), 1320, 360, "Mon-Fri 22:00-06:00"),
        ("Sat,Sun 01:00-05:00", (5, 6), 60, 300, "Sat,Sun 01:00-05:00"),
        ("sat, sun 1:00 - 5:00", (5, 6), 60, 300, "Sat,Sun 01:00-05:00"),
        ("daily 02:00-04:00", (0, 1, 2, 3, 4, 5, 6), 120, 240, "daily 02:00-04:00"),
        ("DAILY 02:00-04:00", (0, 1, 2, 3, 4, 5, 6), 120, 240, "daily 02:00-04:00"),
        ("Fri-Mon 23:00-01:00", (0, 4, 5, 6), 1380, 60, "Fri-Mon 23:00-01:00"),
        ("Sun,Mon 23:00-01:00", (0, 6), 1380, 60, "Sun,Mon 23:00-01:00"),
        ("Mon-Wed,Fri 20:00-24:00", (0, 1, 2, 4), 1200, 1440, "Mon-Wed,Fri 20:00-24:00"),
        ("Sun 00:00-24:00", (6,), 0, 1440, "Sun 00:00-24:00"),
        ("Tue-Tue 10:00-11:00", (1,), 600, 660, "Tue 10:00-11:00"),
    ],
)
def test_range_syntax(text: str, days: tuple[int, ...], start: int, end: int, described: str) -> None:
    parsed = parse_range(text)
    assert parsed == Range(days=days, start=start, end=end)
    assert parsed.describe() == described


def test_describe() -> None:
    assert WEEKEND.describe() == "Sat 01:00-05:00, Sun 01:00-05:00 (Europe/Paris)"
    assert NIGHTS.describe() == "Mon-Fri 22:00-06:00 (Europe/Paris)"
    assert parse_range("Mon-Fri 22:00-06:00").minutes == 480
    assert parse_range("Sun 00:00-24:00").minutes == 1440


BAD: list[tuple[str, list[str], str]] = [
    ("Europe/Pariss", ["Sat 01:00-05:00"], "unknown time zone 'Europe/Pariss'; an IANA name such as"),
    ("Europe", ["Sat 01:00-05:00"], "unknown time zone 'Europe'; "),
    ("", ["Sat 01:00-05:00"], "unknown time zone ''; "),
    ("../etc/passwd", ["Sat 01:00-05:00"], "unknown time zone '../etc/passwd'; "),
    ("utc", ["Sat 01:00-05:00"], "unknown time zone 'utc'; "),
    ("UTC", [], "the list of ranges is empty; at least one range, e.g. ['Sat 01:00-05:00']"),
    ("UTC", ["Sat"], "range 'Sat' is malformed; a range such as 'Sat 01:00-05:00', 'Mon-Fri 22:00-06:00'"),
    ("UTC", ["01:00-05:00"], "range '01:00-05:00' is malformed; a range such as"),
    ("UTC", ["Sat 01:00"], "range 'Sat 01:00' is malformed; "),
    ("UTC", ["Sat 1h-5h"], "range 'Sat 1h-5h' is malformed; "),
    ("UTC", ["Sat 01:00-05:00-06:00"], "is malformed; "),
    ("UTC", ["Sunday 01:00-05:00"], "'Sunday' is not a day or span of days; days among Mon, Tue, Wed"),
    ("UTC", ["Sat,,Sun 01:00-05:00"], "'' is not a day or span of days; "),
    ("UTC", ["Mon-Xyz 01:00-05:00"], "'Mon-Xyz' is not a day or span of days; "),
    ("UTC", ["daily,Sat 01:00-05:00"], "'daily' is not a day or span of days; "),
    ("UTC", ["Sat,Sat 01:00-05:00"], "range 'Sat,Sat 01:00-05:00' names Sat twice; each day once"),
    ("UTC", ["Fri-Mon,Sun 01:00-05:00"], "names Sun twice; each day once"),
    ("UTC", ["Sat 25:00-26:00"], "'25:00' is not a time of day; HH:MM from 00:00 to 23:59"),
    ("UTC", ["Sat 24:00-02:00"], "'24:00' is not a time of day; HH:MM from 00:00 to 23:59"),
    ("UTC", ["Sat 01:00-24:30"], "'24:30' is not a time of day; HH:MM from 00:00 to 24:00"),
    ("UTC", ["Sat 01:60-02:00"], "'01:60' is not a time of day; "),
    ("UTC", ["Sat 01:00-01:00"], "range 'Sat 01:00-01:00' is empty (it starts when it ends); an end after"),
    ("UTC", ["Sat 00:00-00:00"], "is empty (it starts when it ends); "),
    (
        "UTC",
        ["Sat 01:00-05:00", "Sat 04:00-06:00"],
        "ranges 'Sat 01:00-05:00' and 'Sat 04:00-06:00' overlap "
        "(Sat 04:00-05:00); ranges that do not overlap",
    ),
    ("UTC", ["Sat 01:00-05:00", "Sat 02:00-03:00"], "overlap (Sat 02:00-03:00); "),
    (
        "UTC",
        ["Sat 01:00-05:00", "Sat 01:00-05:00"],
        "range 'Sat 01:00-05:00' is listed twice; each range once",
    ),
    ("UTC", ["Sat 01:00-05:00", "daily 04:00-06:00"], "overlap (Sat 04:00-05:00); "),
    ("UTC", ["Mon-Fri 22:00-06:00", "Sat 05:00-07:00"], "overlap (Sat 05:00-06:00); "),  # Friday's night
    ("UTC", ["Sat 22:00-02:00", "Sun 01:00-05:00"], "overlap (Sun 01:00-02:00); "),  # across midnight
    ("UTC", ["Sun 22:00-02:00", "Mon 01:00-03:00"], "overlap (Mon 01:00-02:00); "),  # across the week's end
    ("UTC", ["Sun 20:00-03:00", "Sun 23:00-01:00"], "overlap (Sun 23:00-Mon 01:00); "),
    ("UTC", ["daily 00:00-24:00"], "the ranges cover the whole week, so the window never closes; remove"),
    ("UTC", ["Mon-Sun 12:00-12:00"], "is empty"),
    ("UTC", ["daily 12:00-06:00", "daily 06:00-12:00"], "the ranges cover the whole week"),
]


@pytest.mark.parametrize(("timezone", "allowed", "message"), BAD, ids=[f"{z} {a}" for z, a, _ in BAD])
def test_bad_windows(timezone: str, allowed: list[str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_window(timezone, allowed)
    assert message in str(info.value)
    problem, _, expected = str(info.value).partition("; ")
    assert problem and expected, "what is wrong; what was expected"


def test_touching_ranges_are_allowed() -> None:
    window = parse_window("UTC", ["Sat 00:00-24:00", "Sun 00:00-06:00", "Fri 22:00-24:00"])
    assert window.closes_at(u(1, 2, 23)) == u(1, 4, 6)  # Friday 22:00 to Sunday 06:00 in one go


@pytest.mark.parametrize(
    ("wall", "later", "expected"),
    [
        (datetime(2026, 1, 4, 2, 30), False, u(1, 4, 1, 30)),
        (datetime(2026, 3, 29, 2, 0), False, u(3, 29, 1)),  # gap: the change itself
        (datetime(2026, 3, 29, 2, 59), True, u(3, 29, 1)),
        (datetime(2026, 3, 29, 3, 0), False, u(3, 29, 1)),
        (datetime(2026, 10, 25, 2, 30), False, u(10, 25, 0, 30)),  # twice: first
        (datetime(2026, 10, 25, 2, 30), True, u(10, 25, 1, 30)),  # twice: second
    ],
)
def test_local_time_to_utc(wall: datetime, later: bool, expected: datetime) -> None:
    assert to_utc(wall, PARIS, later=later) == expected


def test_the_playbook_schema_checks_windows() -> None:
    spec = WindowSpec.model_validate({"timezone": "Europe/Paris", "allowed": ["Sat 01:00-05:00"]})
    assert spec.parsed() == Window("Europe/Paris", (Range((5,), 60, 300),))
    cases = [
        ({"timezone": "Mars/Olympus", "allowed": ["Sat 01:00-05:00"]}, ("timezone",), "unknown time zone"),
        ({"timezone": "UTC", "allowed": ["Sat 01:00-05:00", "Sat 1-2"]}, ("allowed", 1), "is malformed"),
        ({"timezone": "UTC", "allowed": ["Sat 01:00-05:00", "Sat 02:00-03:00"]}, ("allowed",), "overlap"),
        ({"timezone": "UTC", "allowed": []}, ("allowed",), "the list of ranges is empty"),
    ]
    for data, loc, message in cases:
        with pytest.raises(pydantic.ValidationError) as info:
            WindowSpec.model_validate(data)
        first = info.value.errors()[0]
        assert first["loc"] == loc and message in first["msg"], first
        assert len(info.value.errors()) == 1


@pytest.mark.parametrize(
    ("text", "timezone", "expected"),
    [
        ("2026-12-05T01:30+01:00", None, u(12, 5, 0, 30)),
        ("2026-12-05T01:30:00Z", "Europe/Paris", u(12, 5, 1, 30)),  # an explicit zone wins
        ("2026-12-05 01:30", None, u(12, 5, 1, 30)),  # no window: UTC
        ("2026-12-05 01:30", "Europe/Paris", u(12, 5, 0, 30)),
        (" 2026-07-04T01:30 ", "Europe/Paris", u(7, 3, 23, 30)),
        ("2026-03-29 02:30", "Europe/Paris", u(3, 29, 1)),  # does not exist: the change
        ("2026-10-25 02:30", "Europe/Paris", u(10, 25, 0, 30)),  # twice: the first
        ("2026-11-01 01:30", "America/New_York", u(11, 1, 5, 30)),
    ],
)
def test_operator_times(text: str, timezone: str | None, expected: datetime) -> None:
    assert parse_at(text, timezone) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", "'tomorrow' is not a date and time; ISO 8601 with a zone"),
        ("2026-12-05", "'2026-12-05' has no time of day; "),
        ("2026-13-05 01:00", "is not a date and time; "),
        ("", "'' is not a date and time; "),
    ],
)
def test_bad_operator_times(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_at(text, "Europe/Paris")
    assert message in str(info.value) and "'YYYY-MM-DD HH:MM' in Europe/Paris" in str(info.value)
