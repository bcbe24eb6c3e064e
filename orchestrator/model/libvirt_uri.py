"""Which libvirt connection URIs the orchestrator opens, and the exact URI it hands to libvirt.

The orchestrator promises that SSH host keys are trusted only from the inventory's known_hosts files and
that no inventory field makes a worker run a command of the inventory's choosing. A libvirt URI can
break both promises through its query parameters (``no_verify``, ``known_hosts_verify=ignore``,
``command``, ``netcat``) or its transport (``qemu+ssh`` runs the ssh binary, which trusts the worker's
own ~/.ssh/known_hosts; ``+ext`` runs a local command). So ``check_uri`` accepts a small allow list and
refuses everything else, and ``connection_uri`` adds the inventory's known_hosts and key.

Rules of ``check_uri`` (each refusal is one ``ValueError("what is wrong; what to do")``):

- ASCII only; no whitespace, no control character, no fragment (``#``); at most 2048 characters.
- Schemes: ``qemu``, ``qemu+unix``, ``qemu+tls``, ``qemu+libssh``, ``qemu+libssh2``, ``test``,
  ``test+unix``, in lower case. ``qemu+ssh`` is refused (use ``qemu+libssh2``), so are ``+ext`` (a local
  command), ``+tcp`` (unauthenticated, unencrypted) and every other driver or transport.
- ``qemu://HOST/...`` is TLS (libvirt's rule: no transport but a host); the TLS and SSH transports need
  a host, the unix transport and the in-process test driver take none.
- A user name only for the SSH transports; never a password (``user:secret@``; messages mask it).
- Paths: ``/system`` or ``/session`` for qemu; ``/default`` or an absolute file path for test.
- Query parameters only from each transport's allow list: unix ``socket``, ``mode``; tls ``pkipath``,
  ``tls_priority``; libssh/libssh2 ``socket``, ``mode``, ``proxy``, ``sshauth`` (``agent``/``privkey``),
  ``no_tty``, ``known_hosts_verify`` (``normal`` only); the in-process test driver none. Refused with
  their reason: ``no_verify``, ``no_sanity``, ``command``, ``netcat``, ``name``, ``auth``, ``authfile``,
  and ``known_hosts`` / ``keyfile`` (the inventory's ``hypervisor.known_hosts`` / ``hypervisor.key`` are
  the one place for them, resolved and checked like ``ssh.known_hosts``). Unknown names are refused too:
  libvirt would pass them on to the daemon.
- Query syntax: ``name=value`` sections joined by ``&``; names plainly in lower case; each name once;
  values percent-decoded free of whitespace and control characters; no ``;`` and no raw ``+``.

Why the syntax rules: measured with libvirt 9.0 and a real sshd (tests/integration/test_libvirt_ssh.py),
``known_hosts_verify=normal`` followed by ``KNOWN_HOSTS_VERIFY=ignore``, by a second
``known_hosts_verify=ignore``, by ``;known_hosts_verify=ignore``, or by ``%6Bnown_hosts_verify=ignore`` each
skipped the host-key check: libvirt reads names in any case, percent-decodes them, takes the last of
duplicates and also splits at ``;``. A raw ``+`` is refused because some URI parsers read it as a space
(write ``%2B``). ``socket`` and ``pkipath`` must be plain absolute paths because, over SSH, libvirt puts
``socket`` unquoted into the shell command it runs on the hypervisor host.

``connection_uri`` returns the URI unchanged for the unix, tls and test transports. For libssh/libssh2 it
appends ``known_hosts=...`` (required), ``keyfile=...`` (when a key is given) and
``known_hosts_verify=normal`` last, percent-encoded. With ``normal`` and no interaction callback (the
adapter opens with ``libvirt.open``), libvirt refuses a host whose key is not in that file and never
writes to it. The defaults (in ``orchestrator.model.inventory``): ``hypervisor.known_hosts`` falls back to
the pool's ``ssh.known_hosts``: it is a list of trusted keys, not a credential, and a farm's file usually
lists every machine, so the fallback never trusts a key the inventory does not name.
``hypervisor.key`` has no default: the hypervisor host is another machine (often another account) than
the pool's servers, and reusing a credential elsewhere is a decision to write down; without it libvirt
offers the worker's SSH agent and ~/.ssh/id_* keys.

``qemu+libssh2`` is the transport to recommend: libssh (``qemu+libssh``) also reads the worker's
~/.ssh/config and trusts keys in its /etc/ssh/ssh_known_hosts besides the file given here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

SCHEMES = ("qemu", "qemu+unix", "qemu+tls", "qemu+libssh", "qemu+libssh2", "test", "test+unix")
SSH_TRANSPORTS = frozenset({"libssh", "libssh2"})
MAX_LENGTH = 2048

# Transports: "local" is the test driver running inside the client process (test:///...), "unix" the
# local daemon's socket (qemu:///system has no transport and no host, which libvirt takes as unix).
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "local": (),
    "unix": ("socket", "mode"),
    "tls": ("pkipath", "tls_priority"),
    "libssh": ("socket", "mode", "proxy", "sshauth", "no_tty", "known_hosts_verify"),
    "libssh2": ("socket", "mode", "proxy", "sshauth", "no_tty", "known_hosts_verify"),
}
_KNOWN = frozenset(name for names in _PARAMETERS.values() for name in names)
_REFUSED = {
    "command": ("runs a local command of its choice to carry the connection", "remove it"),
    "netcat": ("picks the command run on the hypervisor host", "remove it"),
    "no_sanity": ("skips the sanity checks of the TLS certificates", "remove it"),
    "name": (
        "makes the daemon open another driver than the URI names",
        "remove it and write the driver and path in the URI itself",
    ),
    "auth": ("picks the daemon's authentication scheme", "remove it"),
    "authfile": (
        "reads credentials from a file of the worker's",
        "remove it (authenticate with hypervisor.key)",
    ),
    "known_hosts": (
        "would replace the inventory's known_hosts",
        "remove it and set hypervisor.known_hosts (or the pool's ssh.known_hosts) instead",
    ),
    "keyfile": ("would bypass the inventory's hypervisor.key", "remove it and set hypervisor.key instead"),
}
_CHOICES = {
    "mode": ("auto", "direct", "legacy"),
    "proxy": ("auto", "netcat", "native"),
    "no_tty": ("0", "1"),
    "known_hosts_verify": ("normal",),
}
_SSHAUTH = ("agent", "privkey")

_SCHEME = re.compile(r"[a-z][a-z0-9]*(\+[a-z0-9]+)?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")
# Plain absolute paths: no quoting needed in the remote shell command libvirt builds around `socket`.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9._~/:,%=&-]*")
_NAME = re.compile(r"[a-z_]+")
_TLS_PRIORITY = re.compile(r"[A-Za-z0-9:+._@!,=-]+")
_PASSWORD = re.compile(r"(://[^/?#@]*?:)[^/?#@]*@")


@dataclass(frozen=True)
class _Parsed:
    driver: str
    transport: str
    user: str | None
    host: str | None
    path: str
    base: str  # everything before the '?'
    sections: tuple[str, ...]  # the query's raw name=value sections, in order


def check_uri(uri: str) -> str:
    """``uri`` unchanged if the orchestrator may open it; ValueError("what is wrong; what to do") if not."""
    _parse(uri)
    return uri


def transport(uri: str) -> str:
    """How libvirt reaches the driver: "local" (in-process test driver), "unix", "tls", "libssh" or
    "libssh2". ValueError if ``check_uri`` refuses the URI."""
    return _parse(uri).transport


def connection_uri(uri: str, *, known_hosts: Path | None, key: Path | None) -> str:
    """The URI the adapter opens: ``uri`` itself, or for the SSH transports ``uri`` plus the inventory's
    known_hosts (required), key (optional) and ``known_hosts_verify=normal``, percent-encoded."""
    parsed = _parse(uri)
    shown = _shown(uri)
    if parsed.transport not in SSH_TRANSPORTS:
        if known_hosts is not None or key is not None:
            raise ValueError(
                f"uri {shown}: hypervisor.known_hosts and hypervisor.key apply only to the libssh and "
                f"libssh2 transports, not {parsed.transport}; remove them"
            )
        return uri
    if known_hosts is None:
        raise ValueError(
            f"uri {shown}: the {parsed.transport} transport needs a known_hosts file to check the host key "
            "against; set hypervisor.known_hosts or the pool's ssh.known_hosts"
        )
    for field, path in (("known_hosts", known_hosts), ("key", key)):
        if path is not None and not path.is_absolute():
            raise ValueError(
                f"hypervisor.{field} {str(path)!r} is a relative path and libvirt needs an absolute one; "
                "give an absolute path (the inventory resolves relative ones against its folder)"
            )
    kept = [s for s in parsed.sections if s.split("=", 1)[0] != "known_hosts_verify"]
    added = [f"known_hosts={_encode(known_hosts)}"]
    if key is not None:
        added.append(f"keyfile={_encode(key)}")
    # Last, although check_uri allows no duplicate: libvirt uses the last of repeated parameters.
    added.append("known_hosts_verify=normal")
    return f"{parsed.base}?{'&'.join(kept + added)}"


def _encode(path: Path) -> str:
    # Everything but letters, digits, "_.-~" and "/" is percent-encoded: libvirt decodes query values.
    return quote(str(path), safe="/")


def _shown(uri: str) -> str:
    """The URI for a message: password masked, anything invisible or odd written as an escape."""
    masked = _PASSWORD.sub(r"\1***@", uri)
    if len(masked) > 200:
        masked = masked[:200] + "..."
    out = [c if c.isprintable() and not c.isspace() and c not in "'\\" else _escape(c) for c in masked]
    return "'" + "".join(out) + "'"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _parse(uri: str) -> _Parsed:
    if not isinstance(uri, str):
        raise ValueError(f"uri {uri!r} is not text; a libvirt URI such as qemu:///system")
    shown = _shown(uri)
    if not uri:
        raise ValueError("uri is empty; a libvirt URI such as qemu:///system")
    if len(uri) > MAX_LENGTH:
        raise ValueError(f"uri {shown} is {len(uri)} characters long; at most {MAX_LENGTH}")
    for i, char in enumerate(uri):
        if char.isspace() or not char.isprintable():
            raise ValueError(
                f"uri {shown}: contains whitespace or a control character ({_escape(char)} at position {i}); "
                "remove it"
            )
        if not char.isascii():
            raise ValueError(f"uri {shown}: contains the non-ASCII character {char!r}; remove it")
    if "#" in uri:
        raise ValueError(f"uri {shown}: has a fragment ('#'); remove it")
    scheme, sep, rest = uri.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme.lower()):
        raise ValueError(
            f"uri {shown}: is not a libvirt URI DRIVER[+TRANSPORT]://[USER@][HOST[:PORT]]/PATH[?PARAMETERS]; "
            "e.g. qemu:///system or qemu+libssh2://root@hv1/system"
        )
    lowered = scheme.lower()
    driver, _, via = lowered.partition("+")
    if via == "ssh":
        raise ValueError(
            f"uri {shown}: qemu+ssh checks the worker's own ~/.ssh/known_hosts, not the inventory's; "
            "use qemu+libssh2://USER@HOST/system with hypervisor.known_hosts"
        )
    if via == "ext":
        raise ValueError(
            f"uri {shown}: transport ext runs a local command to carry the connection; "
            "use qemu+libssh2://USER@HOST/system with hypervisor.known_hosts, or qemu+tls://HOST/system"
        )
    if via == "tcp":
        raise ValueError(
            f"uri {shown}: transport tcp is unauthenticated and unencrypted; "
            "use qemu+tls://HOST/system or qemu+libssh2://USER@HOST/system"
        )
    if lowered not in SCHEMES:
        raise ValueError(f"uri {shown}: scheme {scheme} is not supported; one of {', '.join(SCHEMES)}")
    if scheme != lowered:
        raise ValueError(f"uri {shown}: scheme {scheme} is not in lower case; write {lowered}")

    head, _, query = rest.partition("?")
    authority, slash, path = head.partition("/")
    path = slash + path
    base = f"{scheme}://{head}"
    user: str | None = None
    if "@" in authority:
        user, _, authority = authority.rpartition("@")
        if ":" in user:
            raise ValueError(
                f"uri {shown}: carries a password in its user part; "
                "remove it (authenticate with hypervisor.key)"
            )
        if not _USER.fullmatch(user):
            raise ValueError(
                f"uri {shown}: user name {user!r} is not valid; "
                "letters, digits, '.', '_' and '-', not starting with '.' or '-'"
            )
    host, port = _host_and_port(authority, shown)

    if via:
        kind = via
    elif host is None:
        kind = "local" if driver == "test" else "unix"
    else:
        kind = "tls"
    if driver == "test" and host is not None:
        raise ValueError(
            f"uri {shown}: the test driver is reached only on this machine, not on host {host!r}; "
            "remove the host"
        )
    if kind in ("unix", "local") and host is not None:
        raise ValueError(
            f"uri {shown}: the unix transport reaches the local daemon, not host {host!r}; "
            "remove the host, or use qemu+libssh2://USER@HOST/system"
        )
    if kind in ("tls", *SSH_TRANSPORTS) and host is None:
        example = "qemu+tls://HOST/system" if kind == "tls" else f"qemu+{kind}://USER@HOST/system"
        raise ValueError(f"uri {shown}: the {kind} transport needs a host; {example}")
    if port is not None and host is None:
        raise ValueError(f"uri {shown}: has a port but no host; remove the port")
    if user is not None and kind not in SSH_TRANSPORTS:
        raise ValueError(
            f"uri {shown}: a user name means nothing to the {kind} transport; remove {user + '@'!r}"
        )
    _check_path(driver, path, shown)
    sections = _check_query(query, "?" in rest, kind, shown)
    return _Parsed(driver, kind, user, host, path, base, sections)


def _host_and_port(authority: str, shown: str) -> tuple[str | None, int | None]:
    if not authority:
        return None, None
    port_text: str | None = None
    if authority.startswith("["):
        inner, bracket, after = authority[1:].partition("]")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            bracket = ""
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(
                f"uri {shown}: host {authority!r} is not a valid [IPv6] address; e.g. [2001:db8::1]"
            )
        host = inner
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_or_empty = authority.partition(":")
        port_text = port_text_or_empty if colon else None
        if not _HOSTNAME.fullmatch(host) or len(host) > 253:
            raise ValueError(
                f"uri {shown}: host {host!r} is not a valid host name or address; "
                "a DNS name, an IPv4 address or an [IPv6] address"
            )
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"uri {shown}: port {port_text!r} is not valid; a number from 1 to 65535")
    return host, int(port_text)


def _check_path(driver: str, path: str, shown: str) -> None:
    if driver == "qemu":
        if path not in ("/system", "/session"):
            raise ValueError(
                f"uri {shown}: path {path!r} is not valid for the qemu driver; /system or /session"
            )
        return
    if not _PATH.fullmatch(path) or path in ("/", "") or path.endswith("/"):
        raise ValueError(
            f"uri {shown}: path {path!r} is not valid for the test driver; /default or the absolute path of "
            "an XML file (letters, digits, '.', '_', '-' and '/')"
        )


def _check_query(query: str, has_query: bool, kind: str, shown: str) -> tuple[str, ...]:
    if not has_query:
        return ()
    if not query:
        raise ValueError(f"uri {shown}: has an empty query; remove the '?'")
    if ";" in query:
        raise ValueError(
            f"uri {shown}: has ';' in its parameters (libvirt also splits parameters at ';'); "
            "separate parameters with '&' and percent-encode ';' in values as %3B"
        )
    if "+" in query:
        raise ValueError(
            f"uri {shown}: has a raw '+' in its parameters (URI parsers may read it as a space); write %2B"
        )
    if _QUERY_CHARS.fullmatch(query) is None:
        char = next(c for c in query if not _QUERY_CHARS.fullmatch(c))
        raise ValueError(f"uri {shown}: character {char!r} is not allowed in the parameters; remove it")
    if re.search(r"%(?![0-9A-Fa-f]{2})", query):
        raise ValueError(f"uri {shown}: has a '%' not followed by two hex digits; write '%25' for a '%'")
    sections = tuple(query.split("&"))
    seen: set[str] = set()
    for section in sections:
        name, _, value = section.partition("=")
        _check_parameter(section, name, value, kind, shown)
        lowered = name.lower()
        if lowered in seen:
            raise ValueError(
                f"uri {shown}: parameter {lowered} is given twice (libvirt would use the last); give it once"
            )
        seen.add(lowered)
    return sections


def _check_parameter(section: str, name: str, raw_value: str, kind: str, shown: str) -> None:
    if not section:
        raise ValueError(f"uri {shown}: has an empty parameter ('&&', or '&' at an end); remove it")
    if not name:
        raise ValueError(f"uri {shown}: has a parameter with no name ({section!r}); remove it")
    if "%" in name:
        decoded = unquote_to_bytes(name).decode("utf-8", "replace")
        raise ValueError(
            f"uri {shown}: parameter name {name!r} is percent-encoded (libvirt reads it as {decoded!r}); "
            "write parameter names plainly"
        )
    lowered = name.lower()
    if lowered == "no_verify":
        what = "the server certificate check" if kind == "tls" else "the host-key check"
        raise ValueError(f"uri {shown}: parameter {name} skips {what}; remove it")
    if lowered in _REFUSED:
        problem, fix = _REFUSED[lowered]
        raise ValueError(f"uri {shown}: parameter {name} {problem}; {fix}")
    if not _NAME.fullmatch(name):
        if _NAME.fullmatch(lowered):
            raise ValueError(
                f"uri {shown}: parameter name {name!r} is not in lower case (libvirt ignores case); "
                f"write {lowered}"
            )
        raise ValueError(f"uri {shown}: parameter name {name!r} is not valid; remove it")
    allowed = _PARAMETERS[kind]
    if name not in allowed:
        takes = ", ".join(allowed) if allowed else "no parameters"
        where = "the in-process test driver" if kind == "local" else f"the {kind} transport"
        if name in _KNOWN:
            raise ValueError(
                f"uri {shown}: parameter {name} does not apply to {where}; {where} takes {takes}"
            )
        raise ValueError(
            f"uri {shown}: parameter {name} is unknown (libvirt would pass it on to the daemon); "
            f"{where} takes {takes}"
        )
    if "=" not in section:
        raise ValueError(f"uri {shown}: parameter {name} has no value; write {name}=VALUE")
    try:
        value = unquote_to_bytes(raw_value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"uri {shown}: parameter {name} is not valid UTF-8 once decoded; fix it") from None
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(
            f"uri {shown}: parameter {name} is empty or decodes to whitespace or a control character; "
            "give a plain value"
        )
    _check_value(name, value, shown)


def _check_value(name: str, value: str, shown: str) -> None:
    if name == "known_hosts_verify" and value in ("auto", "ignore"):
        does = "accepts and records unknown host keys" if value == "auto" else "skips the host-key check"
        raise ValueError(f"uri {shown}: parameter known_hosts_verify={value} {does}; remove it")
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ValueError(
                f"uri {shown}: parameter {name}={value!r} is not valid; one of {', '.join(_CHOICES[name])}"
            )
        return
    if name == "sshauth":
        methods = value.split(",")
        if not all(m in _SSHAUTH for m in methods):
            raise ValueError(
                f"uri {shown}: parameter sshauth={value!r} is not valid (a worker has no one to type a "
                "password); a comma-separated list of agent, privkey"
            )
        return
    if name in ("socket", "pkipath"):
        if not _SAFE_PATH.fullmatch(value):
            raise ValueError(
                f"uri {shown}: parameter {name}={value!r} is not a plain absolute path (over SSH libvirt "
                "puts socket unquoted in a shell command on the hypervisor host); letters, digits, '.', '_', "
                "'-' and '/', starting with '/'"
            )
        return
    if name == "tls_priority" and not _TLS_PRIORITY.fullmatch(value):
        raise ValueError(
            f"uri {shown}: parameter tls_priority={value!r} is not a GnuTLS priority string; "
            "e.g. NORMAL:-VERS-TLS1.0"
        )
