"""What every schema of the input files shares: strict models, typed durations and counts.

Strict types, because a YAML `true` where a number belongs, or `"yes"` where a switch belongs, is a
mistake to report, not a value to reinterpret (pydantic's lax mode would read `true` as 1).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import Strict as StrictType

from orchestrator.model.yamlfile import parse_duration


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("a duration of 0 means nothing can happen in time; a duration above 0, e.g. '30s'")
    return seconds


# Seconds, from '150ms', '2s', '15m', '1h' or a number; finite, bounded (see parse_duration).
Duration = Annotated[float, BeforeValidator(parse_duration)]
# A duration that must leave time for something to happen: timeouts, intervals, deadlines.
Timeout = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]

Int = Annotated[int, StrictType()]
Bool = Annotated[bool, StrictType()]
Port = Annotated[int, StrictType(), Field(ge=1, le=65535)]


def _percent(value: Any, field: str, *, low: int) -> int | str:
    """A count (int >= low) or a percentage '0%'..'100%' (at least low%)."""
    expected = f"a number >= {low} or a percentage '{low}%'..'100%'"
    if isinstance(value, bool) or not isinstance(value, int | str):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML wrote it
        raise ValueError(f"{field} {shown} is not a number; {expected}")
    if isinstance(value, int):
        if value < low:
            raise ValueError(f"{field} {value} is {'negative' if value < 0 else f'below {low}'}; {expected}")
        return value
    digits = value[:-1].strip() if value.endswith("%") else ""
    if not (digits.isdigit() and low <= int(digits) <= 100):
        raise ValueError(f"{field} {value!r} is not valid; {expected}")
    return value


def count_or_percent(field: str, *, low: int = 0) -> BeforeValidator:
    return BeforeValidator(lambda v: _percent(v, field, low=low))
