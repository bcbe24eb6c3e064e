"""The CLI's two consoles and the parsing of arguments every command shares.

Markup and emoji codes are off: what we print comes from files, servers and the store, and a path or an
output holding `[/x]` must print as it is (styled output is built from ``rich.text.Text``).
"""

from __future__ import annotations

import sys

from rich.console import Console

from orchestrator.errors import InputError

# Logs and CI are not terminals; 80 columns would fold every progress line.
console = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def host_list(value: str | None) -> tuple[str, ...]:
    """``--hosts web1,web2``: the names given, in order; () when the option is absent. Given, it must
    name at least one host: an empty list never means the whole pool."""
    if value is None:
        return ()
    names = tuple(h.strip() for h in value.split(","))
    if not any(names):
        raise InputError(
            "--hosts", f"no host names in {value!r}", "comma-separated host names, e.g. web1,web2"
        )
    if not all(names):
        raise InputError(
            "--hosts", f"an empty name in {value!r}", "comma-separated host names, e.g. web1,web2"
        )
    return names
