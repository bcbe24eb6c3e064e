"""The secret values this process has seen, and their removal from anything it writes.

A secret's value is read only by the worker that runs a command (``engine.secrets``), which remembers
it here. Every sink of this process then redacts it: the store (journal rows, output tails, reasons,
progress), the logs (a log record factory, so every handler and every library is covered), and what the
CLI prints. Redaction is the safety net under the main rule, which is that values never enter the
spec, the store or a label in the first place (tokens do, see ``model.secrets``).

Values shorter than MIN_LENGTH are refused when read: redacting "a" or "1" from every output would
destroy the output and still not be reliable.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
from urllib.parse import quote

MIN_LENGTH = 4
SHOWN = "***"

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _variants(value: str) -> set[str]:
    """The spellings in which a value can show up in what we write."""
    forms = {value, shlex.quote(value), quote(value, safe=""), json.dumps(value)[1:-1]}
    forms |= {line for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH}
    return {f for f in forms if len(f) >= MIN_LENGTH}


def remember(value: str) -> None:
    global _pattern
    forms = _variants(value)
    with _lock:
        if forms <= _forms:
            return
        _forms.update(forms)
        # Longest first, so a value is replaced whole rather than by one of its lines.
        _pattern = re.compile("|".join(re.escape(f) for f in sorted(_forms, key=len, reverse=True)))


def redact(text: str) -> str:
    pattern = _pattern
    return pattern.sub(SHOWN, text) if pattern is not None and text else text


def forget_all() -> None:
    """For tests."""
    global _pattern
    with _lock:
        _forms.clear()
        _pattern = None


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process as it is made (message, arguments, traceback)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if _pattern is None:
            return record
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
