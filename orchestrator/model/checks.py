"""What a health check's arguments must be, checked at `validate` so that nothing the HTTP adapter would
refuse is found only after a server was drained and updated."""

from __future__ import annotations

from urllib.parse import urlsplit

from orchestrator.model.inventory import check_address
from orchestrator.model.secrets import SEP, shown

_EXPECTED = "http://HOST[:PORT]/PATH or https://...; e.g. http://{{ host.address }}:8080/health"


def check_url(url: str) -> bool:
    """Raise ValueError("what; expected") unless ``url`` is one the HTTP check can fetch. Secrets (as
    tokens) may stand in the user:password@ part, the path and the query, never in the scheme, host or
    port. Returns whether the URL carries user:password@ (sent as basic authentication)."""
    if any(c.isspace() and c != SEP for c in url):  # U+001F counts as whitespace to Python
        raise ValueError(f"url {shown(url)!r} holds whitespace; {_EXPECTED}")
    return _check(url, shown(url))


def _check(url: str, show: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url {show!r} does not start with http:// or https://; {_EXPECTED}")
    host = parts.hostname or ""
    hostport = parts.netloc.rpartition("@")[2]
    if SEP in hostport:
        raise ValueError(
            f"url {show!r} has a secret in its host or port; "
            "secrets may stand in user:password@, the path or the query"
        )
    if not host:
        raise ValueError(f"url {show!r} has no host; {_EXPECTED}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(
            f"url {show!r} has a port that is not a number from 1 to 65535; {_EXPECTED}"
        ) from None
    if hostport.endswith(":") or parts.port == 0:
        raise ValueError(f"url {show!r} has an empty or zero port; {_EXPECTED}")
    try:
        check_address(host)
    except ValueError as exc:
        raise ValueError(f"url {show!r}: {str(exc).partition('; ')[0]}; {_EXPECTED}") from None
    if parts.fragment:
        raise ValueError(f"url {show!r} has a #fragment, which is never sent; remove it")
    return "@" in parts.netloc
