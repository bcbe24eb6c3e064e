"""Who does something, and why: the actor and reason every change is recorded with."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping

from orchestrator.display import printable
from orchestrator.errors import InputError

# A login, an email address or "First Last": letters of any script, digits, space and . _ @ - + ( )
ACTOR = re.compile(r"^[\w.@+()-](?:[\w .@+()-]{0,118}[\w.@+()-])?$")
REASON_LIMIT = 1000


def actor(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--as``, else ORCH_ACTOR, else the OS login."""
    env = os.environ if env is None else env
    where, name = ("--as", explicit) if explicit else ("ORCH_ACTOR", env.get("ORCH_ACTOR", ""))
    if not name:
        where, name = "the OS login", getpass.getuser()
    if not ACTOR.match(name):
        raise InputError(
            where,
            f"{printable(name[:80])!r} is not a name to record",
            "1 to 120 letters, digits, spaces and . _ @ + - ( ), e.g. alice or alice@hospital.example",
        )
    return name


def reason(text: str | None, *, required_for: str = "") -> str:
    """A reason as given (stripped); ``required_for``: the action that cannot go without one."""
    text = (text or "").strip()
    if not text and required_for:
        raise InputError("--reason", f"{required_for} needs a reason", "--reason 'why, in a few words'")
    if len(text) > REASON_LIMIT or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(
            "--reason",
            f"{printable(text[:80])!r}... is not a reason to record",
            f"one line of at most {REASON_LIMIT} characters, without control characters",
        )
    return text
