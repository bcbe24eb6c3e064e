"""Text from files, servers and the store made safe to show on a terminal or in a report.

What a command printed, a path, a reason: any of them may hold a secret's token or value, control
characters (an escape sequence can rewrite the screen), or Rich markup. ``printable`` handles the first
two; callers print with ``markup=False`` or inside ``rich.text.Text`` for the third.
"""

from __future__ import annotations

from orchestrator.model.secrets import shown
from orchestrator.redact import redact

_KEEP = {"\n", "\t"}


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, multiline: bool = False) -> str:
    """Secrets as ***, control characters escaped (newlines and tabs kept only if ``multiline``)."""
    value = redact(shown(str(text)))
    keep = _KEEP if multiline else set()
    if all(c.isprintable() or c in keep for c in value):
        return value
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in value)
