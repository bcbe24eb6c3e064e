"""HTTP health check on the standard library: status, optional body substring, optional JSON fields,
extra headers, and basic authentication from a URL's user:password@ part (never sent anywhere else,
never shown: messages name the URL without it)."""

from __future__ import annotations

import base64
import http.client
import json as jsonlib
import ssl
import time
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from orchestrator.adapters.checks.base import CheckResult
from orchestrator.errors import CheckError

BODY_LIMIT = 1024 * 1024  # a health endpoint answers in bytes; never hold more than this


class HTTPCheck:
    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        status: int = 200,
        contains: str | None = None,
        json: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise CheckError(
                f"health check {name or shown}: url {shown!r} must be http://HOST[:PORT]/PATH or https://..."
            )
        if any(c in value for value in (headers or {}).values() for c in "\r\n"):
            raise CheckError(f"health check {name or shown}: a header value holds a line break")
        self.name = name or f"http {shown}"
        self.url = shown  # for messages: without user:password@
        self.headers = {"Connection": "close", "User-Agent": "orchestrator-check", **(headers or {})}
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.status = status
        self.contains = contains
        self.json = dict(json or {})
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._where = f"{self._host}:{self._port}"

    def probe(self) -> CheckResult:
        try:
            status, body = self._get()
        except ConnectionRefusedError:
            return CheckResult(False, f"connection refused to {self._where}")
        except TimeoutError:
            return CheckResult(False, f"no answer from {self._where} within {self.timeout:g} s")
        except http.client.RemoteDisconnected:
            return CheckResult(False, f"{self._where} closed the connection without an answer")
        except (OSError, http.client.HTTPException) as exc:
            return CheckResult(False, f"cannot get {self.url}: {type(exc).__name__}: {exc}")
        return self._judge(status, body)

    def _get(self) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.timeout
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request("GET", self._path, headers=self.headers)
            response = conn.getresponse()
            # The socket timeout bounds each read; this bounds the whole answer.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            return response.status, response.read(BODY_LIMIT)
        finally:
            conn.close()

    def _judge(self, status: int, body: bytes) -> CheckResult:
        if status != self.status:
            return CheckResult(False, f"HTTP {status}, expected {self.status}")
        seen = [f"HTTP {status}"]
        if self.contains is not None and self.contains not in body.decode("utf-8", errors="replace"):
            return CheckResult(False, f"HTTP {status}, body does not contain {self.contains!r}")
        if self.json:
            try:
                document = jsonlib.loads(body)
            except ValueError:
                return CheckResult(False, f"HTTP {status}, body is not JSON: {_snippet(body)}")
            for path, expected in self.json.items():
                found, actual = _lookup(document, path)
                if not found:
                    return CheckResult(False, f"json field {path} is missing, expected {expected!r}")
                if not _same(actual, expected):
                    return CheckResult(False, f"json field {path}={actual!r}, expected {expected!r}")
                seen.append(f"{path}={actual!r}")
        return CheckResult(True, ", ".join(seen))


def _lookup(document: object, path: str) -> tuple[bool, object]:
    """Follow a dotted path ("app.version", "items.0.id") through dicts and lists."""
    current = document
    for key in path.split("."):
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False, None
    return True, current


def _same(actual: object, expected: object) -> bool:
    if actual == expected and isinstance(actual, bool) == isinstance(expected, bool):  # 1 is not true
        return True
    # A playbook often writes version: "2" for a JSON 2 (or the reverse): compare JSON spellings.
    if isinstance(actual, dict | list) or isinstance(expected, dict | list):
        return False
    return _text(actual) == _text(expected)


def _text(value: object) -> str:
    return value if isinstance(value, str) else jsonlib.dumps(value)


def _snippet(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", errors="replace").replace("\n", " ")
    return repr(text + ("..." if len(body) > limit else ""))
