"""Maintenance windows: when a rollout may run, in the local time of the site.

```yaml
window: {timezone: Europe/Paris, allowed: ["Sat 01:00-05:00", "Mon-Fri 22:00-06:00"]}
```

A range is DAYS START-END in the window's time zone. DAYS is a day (Mon..Sun, any case), a span of days
(``Mon-Fri``, ``Fri-Mon`` wraps), a comma list of those (``Sat,Sun``), or ``daily``. A range opens on each
of its days at START; an END at or before START is on the next day (``22:00-06:00`` lasts 8 hours);
END may be ``24:00``. Ranges may touch but not overlap, and together may not cover the whole week (a
window that never closes is no window: remove ``window:`` instead).

Daylight-saving time, decided here once:

- a local time that does not exist (spring forward: 02:30 on 2026-03-29 in Europe/Paris) means the first
  instant that exists after it (03:00 CEST, the moment of the change), for starts and ends alike;
- a local time that happens twice (fall back: 02:00-03:00 on 2026-10-25 in Europe/Paris) means its
  first occurrence for a start and its second for an end, so a range never loses the repeated hour:
  ``Sun 01:00-05:00`` lasts 5 hours that night (its wall-clock 4 hours plus the repeated one) and 3
  hours on the spring-forward night.

Instants going in must be aware datetimes; instants coming out are aware and in UTC. Touching or (on a
fall-back night) overlapping occurrences count as one open period: ``closes_at`` is when the window
really closes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY = {name.lower(): n for n, name in enumerate(DAY_NAMES)}
_WEEK = 7 * 1440  # minutes
_RANGE = re.compile(r"^\s*(?P<days>\S.*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
_SYNTAX = (
    "a range such as 'Sat 01:00-05:00', 'Mon-Fri 22:00-06:00', 'Sat,Sun 01:00-05:00' or 'daily 02:00-04:00'"
)
# Dates scanned ahead of an instant: an open period can run into a second week only on a DST night
# (see module docstring), so three weeks always reach the end of a period and the next opening.
_HORIZON_DAYS = 22


@dataclass(frozen=True)
class Range:
    """Opens at ``start`` (minutes after local midnight) on each of ``days`` (0 = Monday) and closes at
    ``end``, on the next day when ``end <= start``."""

    days: tuple[int, ...]
    start: int
    end: int

    @property
    def minutes(self) -> int:
        return self.end - self.start if self.end > self.start else self.end + 1440 - self.start

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class Window:
    timezone: str
    ranges: tuple[Range, ...]

    def is_open(self, at: datetime) -> bool:
        return self._period(at) is not None

    def closes_at(self, at: datetime) -> datetime | None:
        """End of the open period containing ``at`` (UTC), or None when the window is closed then."""
        period = self._period(at)
        return period[1] if period else None

    def longest_opening(self) -> timedelta:
        """The longest time the window stays open at a stretch, on wall clocks (touching ranges count
        as one opening; a DST night may add or take an hour)."""
        week = bytearray(_WEEK)
        for r in self.ranges:
            for day in r.days:
                begin = day * 1440 + r.start
                for minute in range(begin, begin + r.minutes):
                    week[minute % _WEEK] = 1
        # The week is a circle: start counting just after a closed minute (some minute is closed).
        first_closed = week.index(0)
        longest = run = 0
        for i in range(1, _WEEK + 1):
            if week[(first_closed + i) % _WEEK]:
                run += 1
                longest = max(longest, run)
            else:
                run = 0
        return timedelta(minutes=longest)

    def time_left(self, at: datetime) -> timedelta:
        """How long the window stays open from ``at``; zero when it is closed."""
        end = self.closes_at(at)
        return end - at if end else timedelta(0)

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself (in UTC) if the window is open then, else the next opening (UTC)."""
        at = _utc(at)
        for start, end in self._periods(at):
            if end > at:
                return max(start, at)
        raise AssertionError("a window that is not open all week opens within three weeks")

    def describe(self) -> str:
        return f"{', '.join(r.describe() for r in self.ranges)} ({self.timezone})"

    def _period(self, at: datetime) -> tuple[datetime, datetime] | None:
        at = _utc(at)
        for start, end in self._periods(at):
            if start <= at < end:
                return start, end
            if start > at:
                return None
        return None

    def _periods(self, at: datetime) -> list[tuple[datetime, datetime]]:
        """Open periods (UTC, merged when they touch or overlap) from the occurrences starting on local
        dates around ``at``: two days back (an occurrence lasts at most 25 hours) to three weeks ahead."""
        zone = ZoneInfo(self.timezone)
        first = at.astimezone(zone).date() - timedelta(days=2)
        occurrences = sorted(
            occurrence(r, first + timedelta(days=n), zone)
            for n in range(_HORIZON_DAYS + 3)
            for r in self.ranges
            if (first + timedelta(days=n)).weekday() in r.days
        )
        merged: list[tuple[datetime, datetime]] = []
        for start, end in occurrences:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def occurrence(r: Range, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """(opening, closing) in UTC of ``r`` starting on local date ``day``."""
    midnight = datetime(day.year, day.month, day.day)
    start = midnight + timedelta(minutes=r.start)
    end = start + timedelta(minutes=r.minutes)
    return to_utc(start, zone), to_utc(end, zone, later=True)


def to_utc(wall: datetime, zone: ZoneInfo, *, later: bool = False) -> datetime:
    """A naive local time in ``zone`` as an aware UTC instant. A time that happens twice is its first
    occurrence, or its second with ``later``; a time that does not exist is the first instant after it."""
    local = wall.replace(tzinfo=zone, fold=1 if later else 0)
    utc = local.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == wall:
        return utc
    # In a gap: fold=1 reads the wall time with the offset after the change (an earlier instant), fold=0
    # with the one before; the change lies between. Offsets change on whole seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(wall.replace(tzinfo=zone, fold=0).astimezone(UTC).timestamp())
    while low + 1 < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; ValueError naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; an IANA name such as 'Europe/Paris', 'America/New_York' or 'UTC'"
        ) from None


def parse_range(text: str) -> Range:
    """One range such as ``Mon-Fri 22:00-06:00``; ValueError("what; expected") when malformed."""
    if not isinstance(text, str):
        raise ValueError(f"range {text!r} is not text; {_SYNTAX}")
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"range {text!r} is malformed; {_SYNTAX}")
    days = _parse_days(match["days"], text)
    start = _parse_time(match["start"], text, end=False)
    end = _parse_time(match["end"], text, end=True)
    if start == end:
        raise ValueError(
            f"range {text!r} is empty (it starts when it ends); an end after the start, e.g. "
            f"'{match['days']} {match['start']}-{_hhmm((start + 60) % 1440)}'"
        )
    return Range(days=days, start=start, end=end)


def check_range(text: str) -> str:
    """For a schema: ``text`` unchanged if it parses as a range."""
    parse_range(text)
    return text


def parse_window(timezone: str, allowed: list[str]) -> Window:
    """The window of a playbook; ValueError("what is wrong; what was expected") on any mistake."""
    zone(timezone)
    if not allowed:
        raise ValueError("the list of ranges is empty; at least one range, e.g. ['Sat 01:00-05:00']")
    ranges = tuple(parse_range(text) for text in allowed)
    spans = [
        (day * 1440 + r.start, day * 1440 + r.start + r.minutes, text)
        for r, text in zip(ranges, allowed, strict=True)
        for day in r.days
    ]
    for i, (a_start, a_end, a_text) in enumerate(spans):
        for b_start, b_end, b_text in spans[i + 1 :]:
            for shift in (-_WEEK, 0, _WEEK):  # the week is a circle: Sun 23:00-01:00 runs into Monday
                low, high = max(a_start, b_start + shift), min(a_end, b_end + shift)
                if low < high:
                    _overlap(a_text, b_text, low, high)
    if sum(end - start for start, end, _ in spans) >= _WEEK:
        raise ValueError(
            "the ranges cover the whole week, so the window never closes; "
            "remove `window:` to allow updates at any time, or leave some time closed"
        )
    return Window(timezone=timezone, ranges=ranges)


def _overlap(a: str, b: str, low: int, high: int) -> NoReturn:
    if a == b:
        raise ValueError(f"range {a!r} is listed twice; each range once")
    raise ValueError(
        f"ranges {a!r} and {b!r} overlap ({_week_span(low, high)}); "
        "ranges that do not overlap (join overlapping ones into one range)"
    )


def _parse_days(text: str, whole: str) -> tuple[int, ...]:
    names = ", ".join(DAY_NAMES)
    if text.strip().lower() == "daily":
        return tuple(range(7))
    days: list[int] = []
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first.lower() not in _DAY or (last and last.lower() not in _DAY):
            raise ValueError(
                f"range {whole!r}: {part!r} is not a day or span of days; "
                f"days among {names} (e.g. 'Mon-Fri', 'Sat,Sun') or 'daily'"
            )
        day, stop = _DAY[first.lower()], _DAY[(last or first).lower()]
        while True:
            if day in days:
                raise ValueError(f"range {whole!r} names {DAY_NAMES[day]} twice; each day once")
            days.append(day)
            if day == stop:
                break
            day = (day + 1) % 7
    return tuple(sorted(days))


def _parse_time(text: str, whole: str, *, end: bool) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes < 60 and (hours < 24 or (end and hours == 24 and minutes == 0)):
        return hours * 60 + minutes
    latest = "24:00" if end else "23:59"
    raise ValueError(f"range {whole!r}: {text!r} is not a time of day; HH:MM from 00:00 to {latest}")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _week_span(low: int, high: int) -> str:
    """'Sat 04:00-05:00' or 'Sun 23:00-Mon 01:00' for minutes of the week (either may be past its end)."""
    length = high - low
    low %= _WEEK
    day_start = low // 1440 * 1440
    start = f"{DAY_NAMES[low // 1440]} {_hhmm(low - day_start)}"
    if low + length <= day_start + 1440:
        return f"{start}-{_hhmm(low + length - day_start)}"
    end = (low + length) % _WEEK
    return f"{start}-{DAY_NAMES[end // 1440]} {_hhmm(end % 1440)}"


def _days_text(days: tuple[int, ...]) -> str:
    """Days as written back: 'daily', 'Mon-Fri', 'Sat,Sun', 'Fri-Mon' (runs of 3+ days as spans)."""
    if len(days) == 7:
        return "daily"
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:  # a run through Sunday into Monday
        runs = [*runs[1:-1], runs[-1] + runs[0]]
    parts = [
        f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}" if len(run) >= 3 else ",".join(DAY_NAMES[d] for d in run)
        for run in runs
    ]
    return ",".join(parts)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone; an aware datetime (e.g. in UTC)")
    return at.astimezone(UTC)
