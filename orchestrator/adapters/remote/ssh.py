"""Remote over SSH with paramiko: strict host keys, bounded commands, a per-process connection pool.

Host keys come only from the target's own known_hosts file; an unknown or changed key is refused,
never added. Errors before a command could start are transient (safe to retry on a new connection);
errors after it may have started are not.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import paramiko

from orchestrator.adapters.remote.base import CommandResult, SSHTarget
from orchestrator.errors import CommandTimeout, HostKeyError, RemoteError

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 64 * 1024  # bytes kept of each of stdout and stderr (the end, which explains failures)
SFTP_STALL_TIMEOUT = 30.0  # an SFTP request with no answer for this long means the link is dead
_CHUNK = 32 * 1024


class _StrictPolicy(paramiko.RejectPolicy):
    """Refuse unknown host keys with a message that says how to verify and add one."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        t = self.target
        port = "" if t.port == 22 else f"-p {t.port} "
        raise HostKeyError(
            f"host key of {t.host} ({hostname}) is not in {t.known_hosts}; verify the "
            f"{key.get_name()} fingerprint {key.fingerprint} out of band, then add it "
            f"(ssh-keyscan {port}{t.address} >> {t.known_hosts})",
            host=t.host,
        )


class _Tail:
    """The last `limit` bytes of a stream, trimmed in amortised steps so large outputs stay cheap."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        self._trim()
        text = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} earlier bytes not kept ...]\n{text}"
        return text


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "connection closed"
    return str(exc) or type(exc).__name__


def _short(command: str, limit: int = 300) -> str:
    return repr(command if len(command) <= limit else command[:limit] + "...")


class SSHRemote:
    """One authenticated SSH connection to one host. Thread-safe: each run() opens its own channel."""

    def __init__(self, target: SSHTarget, client: paramiko.SSHClient) -> None:
        self.target = target
        self._client = client
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()
        self._where = f"{target.host} ({target.user}@{target.address}:{target.port})"

    @classmethod
    def connect(cls, target: SSHTarget) -> SSHRemote:
        where = f"{target.host} ({target.user}@{target.address}:{target.port})"
        if not target.known_hosts.is_file():
            raise RemoteError(
                f"cannot connect to {where}: known_hosts file {target.known_hosts} does not exist",
                host=target.host,
            )
        if not target.key_file.is_file():
            raise RemoteError(
                f"cannot connect to {where}: private key file {target.key_file} does not exist",
                host=target.host,
            )
        client = paramiko.SSHClient()
        try:
            # Only the target's own file: never ~/.ssh/known_hosts or /etc/ssh.
            client.get_host_keys().load(str(target.known_hosts))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise RemoteError(
                f"cannot connect to {where}: cannot read known_hosts file {target.known_hosts}: {exc}",
                host=target.host,
            ) from exc
        client.set_missing_host_key_policy(_StrictPolicy(target))
        started = time.monotonic()
        try:
            client.connect(
                target.address,
                sock=_open_socket(target),
                port=target.port,
                username=target.user,
                key_filename=str(target.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=target.connect_timeout,
                banner_timeout=target.connect_timeout,
                auth_timeout=target.connect_timeout,
                channel_timeout=target.connect_timeout,
            )
        except Exception as exc:
            handshake_done = _handshake_done(client)
            client.close()
            raise _connect_error(target, where, exc, handshake_done) from exc
        except BaseException:
            client.close()
            raise
        log.debug("ssh %s: connected in %.3f s", where, time.monotonic() - started)
        return cls(target, client)

    def is_active(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, command: str, *, timeout: float) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout
        what = f"command {_short(command)} on {self._where}"
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(
                f"cannot run {what}: the connection is closed; the command did not start",
                host=self.target.host,
                transient=True,
            )
        try:
            chan = transport.open_session(timeout=max(0.01, min(timeout, self.target.connect_timeout)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # The server refusing a channel (e.g. MaxSessions) leaves a working connection; any other
            # failure means it is hung (e.g. the VM was reverted): drop it so that the pool reconnects.
            if not isinstance(exc, paramiko.ChannelException):
                self.close()
            raise RemoteError(
                f"cannot run {what}: opening an SSH channel failed ({_describe(exc)}); "
                "the command did not start",
                host=self.target.host,
                transient=True,
            ) from exc
        out, err = _Tail(), _Tail()
        try:
            try:
                with _closing_at(deadline, chan):
                    chan.exec_command(command)
                chan.shutdown_write()  # commands that read stdin see EOF instead of hanging
                _collect(chan, out, err, deadline)
            except TimeoutError:
                raise CommandTimeout(
                    f"{what} did not finish within {timeout:g} s; the channel was closed but the command "
                    "may still be running there (if it started a background process, redirect its "
                    f"output so the session can end). Last output: {_last_line(out, err)}",
                    host=self.target.host,
                    result=_partial(command, out, err, started),
                ) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if time.monotonic() >= deadline:
                    raise CommandTimeout(
                        f"{what} did not start within {timeout:g} s; the channel was closed",
                        host=self.target.host,
                    ) from exc
                raise self._lost(command, started, exc, _partial(command, out, err, started)) from exc
            if chan.exit_status == -1 and _connection_lost(transport):
                raise self._lost(
                    command, started, transport.saved_exception, _partial(command, out, err, started)
                )
            if chan.exit_status == -1 and time.monotonic() >= deadline:
                # The deadline closed the channel just as the command started.
                raise CommandTimeout(f"{what} did not finish within {timeout:g} s", host=self.target.host)
        finally:
            chan.close()
        result = CommandResult(
            command=command,
            # -1: the channel closed without an exit status (the command was killed by a signal).
            exit_code=chan.exit_status,
            stdout=out.text(),
            stderr=err.text(),
            duration=time.monotonic() - started,
        )
        log.debug(
            "ssh %s: %s -> exit %d in %.3f s", self._where, _short(command), result.exit_code, result.duration
        )
        return result

    def _lost(
        self, command: str, started: float, exc: BaseException | None, partial: CommandResult
    ) -> RemoteError:
        self.close()
        return RemoteError(
            f"connection to {self._where} was lost after {time.monotonic() - started:.1f} s while running "
            f"{_short(command)} ({_describe(exc)}); the command may have partly run",
            host=self.target.host,
            result=partial,
        )

    def upload(self, local: Path, remote_path: str, *, mode: int | None = None) -> None:
        what = f"{local} to {self.target.host}:{remote_path}"
        if not local.is_file():
            raise RemoteError(f"cannot upload {what}: the local file does not exist", host=self.target.host)
        # Upload beside the target and rename: the file is never seen half-written, and a running
        # binary can be replaced ("text file busy" otherwise).
        partial = f"{remote_path}.partial"
        with self._sftp_lock:
            try:
                sftp = self._sftp_client()
                sftp.put(str(local), partial)
                if mode is not None:
                    sftp.chmod(partial, mode)
                sftp.posix_rename(partial, remote_path)
            except (paramiko.SSHException, EOFError, TimeoutError) as exc:
                self._drop_sftp()
                raise self._upload_lost(what, exc) from exc
            except OSError as exc:  # the server refused: no such directory, permission, disk full
                if not self.is_active():
                    self._drop_sftp()
                    raise self._upload_lost(what, exc) from exc
                self._remove_quietly(partial)
                raise RemoteError(f"cannot upload {what}: {exc}", host=self.target.host) from exc
        log.debug("ssh %s: uploaded %s to %s", self._where, local, remote_path)

    def _remove_quietly(self, path: str) -> None:
        if self._sftp is not None:
            with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                self._sftp.remove(path)

    def _upload_lost(self, what: str, exc: BaseException) -> RemoteError:
        # Re-uploading is idempotent (write beside, then rename), so a retry on a new connection is safe.
        return RemoteError(
            f"cannot upload {what}: the SSH connection failed ({_describe(exc)})",
            host=self.target.host,
            transient=True,
        )

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise paramiko.SSHException("the connection is closed")
        chan = transport.open_session(timeout=self.target.connect_timeout)
        chan.settimeout(SFTP_STALL_TIMEOUT)
        with _closing_at(time.monotonic() + self.target.connect_timeout, chan):
            chan.invoke_subsystem("sftp")
        self._sftp = paramiko.SFTPClient(chan)
        return self._sftp

    def _drop_sftp(self) -> None:
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()

    def close(self) -> None:
        self._drop_sftp()
        self._client.close()


def _open_socket(target: SSHTarget) -> socket.socket:
    sock = socket.create_connection((target.address, target.port), timeout=target.connect_timeout)
    # Without this, Nagle's algorithm meets the server's delayed ACK and each channel open waits ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _handshake_done(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.host_key is not None


def _connect_error(target: SSHTarget, where: str, exc: BaseException, handshake_done: bool) -> Exception:
    if isinstance(exc, HostKeyError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        name = f"[{target.address}]:{target.port}" if target.port != 22 else target.address
        return HostKeyError(
            f"host key of {where} has CHANGED: {target.known_hosts} has {exc.expected_key.get_name()} "
            f"{exc.expected_key.fingerprint}, the server now presents {exc.key.get_name()} "
            f"{exc.key.fingerprint}. This may be a man-in-the-middle attack, or the host was rebuilt; "
            f"refusing to connect. Only if the change is expected and the new fingerprint verified out of "
            f"band: ssh-keygen -R '{name}' -f {target.known_hosts}, then add the new key",
            host=target.host,
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return RemoteError(
            f"cannot log in to {where}: private key {target.key_file} is encrypted; use a key without a "
            "passphrase",
            host=target.host,
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return RemoteError(
            f"cannot log in to {where}: the server refused key {target.key_file} for user "
            f"{target.user} ({exc}); is its public key in that user's authorized_keys?",
            host=target.host,
        )
    if isinstance(exc, socket.gaierror):
        return RemoteError(
            f"cannot connect to {where}: cannot resolve {target.address}: {exc}", host=target.host
        )
    if isinstance(exc, TimeoutError):
        return RemoteError(
            f"cannot connect to {where}: no answer within {target.connect_timeout:g} s",
            host=target.host,
            transient=True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return RemoteError(
            f"cannot connect to {where}: connection refused (is sshd running and listening there?)",
            host=target.host,
            transient=True,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return RemoteError(
            f"cannot connect to {where}: {exc.strerror} (is the host up and its network configured?)",
            host=target.host,
            transient=True,
        )
    if isinstance(exc, OSError | EOFError | paramiko.SSHException) and not handshake_done:
        # Nothing has run on the host before authentication: safe to try again.
        return RemoteError(
            f"cannot connect to {where}: the SSH handshake failed ({_describe(exc)})",
            host=target.host,
            transient=True,
        )
    if isinstance(exc, OSError | EOFError | paramiko.SSHException):
        return RemoteError(
            f"cannot log in to {where} with key {target.key_file}: {_describe(exc)}",
            host=target.host,
        )
    return RemoteError(f"cannot connect to {where}: unexpected {type(exc).__name__}: {exc}", host=target.host)


@contextlib.contextmanager
def _closing_at(deadline: float, chan: paramiko.Channel) -> Iterator[None]:
    """Close chan at the deadline: paramiko waits for replies to channel requests without a timeout."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), chan.close)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _collect(chan: paramiko.Channel, out: _Tail, err: _Tail, deadline: float) -> None:
    """Read stdout and stderr as they come (so neither fills its window) until EOF and exit status."""
    wakeup = chan.fileno()  # readable whenever either stream has data, and after EOF or close
    while True:
        while chan.recv_ready():
            out.feed(chan.recv(_CHUNK))
        while chan.recv_stderr_ready():
            err.feed(chan.recv_stderr(_CHUNK))
        if chan.closed or (chan.eof_received and chan.exit_status_ready()):
            while chan.recv_ready():
                out.feed(chan.recv(_CHUNK))
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(_CHUNK))
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if chan.eof_received:
            # After EOF the wakeup pipe stays readable for good: wait for the exit status instead.
            chan.status_event.wait(remaining)
        else:
            select.select([wakeup], [], [], remaining)


def _connection_lost(transport: paramiko.Transport) -> bool:
    # The transport thread closes its channels before it marks itself inactive, so look at both.
    return transport.saved_exception is not None or not transport.is_active()


def _partial(command: str, out: _Tail, err: _Tail, started: float) -> CommandResult:
    """What a command cut off had printed so far, as a result without an exit status."""
    return CommandResult(command, -1, out.text(), err.text(), time.monotonic() - started)


def _last_line(out: _Tail, err: _Tail) -> str:
    for tail in (err, out):
        lines = tail.data.decode("utf-8", errors="replace").strip().splitlines()
        if lines:
            return repr(lines[-1][-200:])
    return "(none)"


class SSHPool:
    """Live connections of this process, one per target, reused across steps (connect costs ~60 ms)."""

    def __init__(self, connect: Callable[[SSHTarget], SSHRemote] = SSHRemote.connect) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._remotes: dict[SSHTarget, SSHRemote] = {}
        self._pid = os.getpid()

    def get(self, target: SSHTarget) -> SSHRemote:
        with self._lock:
            self._forget_if_forked()
            remote = self._remotes.get(target)
            if remote is not None and remote.is_active():
                return remote
        # Connect outside the lock so that hosts connect in parallel.
        fresh = self._connect(target)
        with self._lock:
            current = self._remotes.get(target)
            if current is not None and current is not remote and current.is_active():
                fresh.close()  # another thread won the race
                return current
            self._remotes[target] = fresh
        if remote is not None:
            remote.close()
        return fresh

    def discard(self, which: str | SSHTarget) -> None:
        """Forget and close the connections to a host, e.g. after a snapshot revert left them hung."""
        with self._lock:
            self._forget_if_forked()
            gone = [t for t in self._remotes if t == which or t.host == which]
            remotes = [self._remotes.pop(t) for t in gone]
        for remote in remotes:
            remote.close()

    def close_all(self) -> None:
        with self._lock:
            self._forget_if_forked()
            remotes = list(self._remotes.values())
            self._remotes.clear()
        for remote in remotes:
            remote.close()

    def _forget_if_forked(self) -> None:
        # A forked child (e.g. a prefork worker) shares the parent's sockets: never use or close them.
        if os.getpid() != self._pid:
            self._remotes = {}
            self._pid = os.getpid()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
