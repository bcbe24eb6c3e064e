"""Playbook + inventory -> RolloutSpec. Everything a user can get wrong is found here, before any
server is touched: unknown pool or host, missing files, undefined template names, values in unsafe
shell positions, check arguments the adapters would refuse, names used twice, a window too short."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.model import playbook as pb
from orchestrator.model.checks import check_url
from orchestrator.model.inventory import (
    CommandSnapshotConfig,
    Host,
    Inventory,
    LibvirtConfig,
    NoSnapshots,
    Pool,
    SSHConfig,
    check_address,
)
from orchestrator.model.plan import capacity_floor_of, expected_host_seconds, plan_batches
from orchestrator.model.secrets import SecretSpec, names_in
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec, SSHSpec, StepSpec
from orchestrator.model.templating import render, secrets_context
from orchestrator.model.yamlfile import LineMap

DEFAULT_SSH = SSHConfig(user="root", port=22, connect_timeout=10.0)
SNAPSHOT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$"


class Files:
    """Where the two input files are, for error messages."""

    def __init__(self, playbook: LineMap, inventory: LineMap) -> None:
        self.playbook = playbook
        self.inventory = inventory


def _host_context(
    name: str,
    host: Host,
    ssh: SSHConfig,
    pool_name: str,
    pool: Pool,
    inventory: Inventory,
    playbook: pb.Playbook,
    rollout_id: str,
    secrets: dict[str, SecretSpec],
) -> dict[str, Any]:
    variables = {**inventory.vars, **pool.vars, **host.vars, **playbook.vars}
    return {
        "host": {
            "name": name,
            "address": host.address,
            "domain": host.domain or name,
            "lb_server": host.lb_server or name,
            "port": ssh.port,
            "user": ssh.user,
        },
        "vars": variables,
        "pool": {"name": pool_name},
        "rollout": {"id": rollout_id, "name": playbook.name},
        "secrets": secrets_context(secrets),
    }


def _secrets(
    playbook: pb.Playbook, inventory: Inventory, pool_name: str, files: Files
) -> dict[str, SecretSpec]:
    """Declared secrets, the later declaration winning: inventory, then pool, then playbook."""
    found: dict[str, SecretSpec] = {}
    for name, source in inventory.secrets.items():
        found[name] = SecretSpec(name=name, source=source, where=files.inventory.where(("secrets", name)))
    for name, source in inventory.pools[pool_name].secrets.items():
        where = files.inventory.where(("pools", pool_name, "secrets", name))
        found[name] = SecretSpec(name=name, source=source, where=where)
    base = files.playbook.path.resolve().parent
    for name, source in playbook.secrets.items():
        if source.file is not None and not source.file.is_absolute():
            source = source.model_copy(update={"file": base / source.file})
        found[name] = SecretSpec(name=name, source=source, where=files.playbook.where(("secrets", name)))
    return found


def _ssh(name: str, host: Host, pool: Pool, pool_name: str, ssh: SSHConfig, files: Files) -> SSHSpec:
    loc = ("pools", pool_name, "hosts", name)
    for field in ("key", "known_hosts"):
        path = getattr(ssh, field)
        if path is None:
            raise InputError(
                files.inventory.where(loc),
                f"host {name} has no ssh.{field}",
                f"set ssh.{field} on the pool or the host",
            )
        if not Path(path).is_file():
            raise InputError(
                files.inventory.where((*loc, "ssh", field))
                if host.ssh.model_dump()[field]
                else files.inventory.where(("pools", pool_name, "ssh", field)),
                f"ssh {field.replace('_', ' ')} file {path} does not exist",
                "create it or fix the path (relative paths count from the inventory's folder)",
            )
    assert ssh.user and ssh.port and ssh.key and ssh.known_hosts and ssh.connect_timeout is not None
    return SSHSpec(
        address=host.address,
        port=ssh.port,
        user=ssh.user,
        key_file=ssh.key,
        known_hosts=ssh.known_hosts,
        connect_timeout=ssh.connect_timeout,
    )


def _not_blank(text: str, where: str, what: str) -> str:
    if not text.strip():
        raise InputError(where, f"{what} renders to nothing", f"a non-empty {what}")
    return text


def _steps(
    playbook: pb.Playbook, ctx: dict[str, Any], files: Files, base_dir: Path, missing: list[str] | None
) -> list[StepSpec]:
    steps: list[StepSpec] = []
    for i, step in enumerate(playbook.update):
        if isinstance(step, pb.RunStep):
            where = files.playbook.where(("update", i, "run"))
            command = _not_blank(
                render(step.run, ctx, where=where, shell=True, allow_secrets=True), where, "run"
            )
            steps.append(StepSpec(kind="run", label=f"run {command}", timeout=step.timeout, command=command))
            continue
        src_where = files.playbook.where(("update", i, "upload", "src"))
        src = Path(_not_blank(render(step.upload.src, ctx, where=src_where, shell=False), src_where, "src"))
        src = src if src.is_absolute() else base_dir / src
        if not src.is_file():
            if missing is None:
                raise InputError(
                    src_where,
                    f"upload source {src} does not exist",
                    "put the file there or fix the path (relative paths count from the playbook's folder)",
                )
            if str(src) not in missing:
                missing.append(str(src))
        dest_where = files.playbook.where(("update", i, "upload", "dest"))
        dest = _not_blank(render(step.upload.dest, ctx, where=dest_where, shell=False), dest_where, "dest")
        mode = int(step.upload.mode, 8) if step.upload.mode else None
        steps.append(
            StepSpec(
                kind="upload",
                label=f"upload {src.name} -> {dest}",
                timeout=step.timeout,
                src=src,
                dest=dest,
                mode=mode,
            )
        )
    return steps


def _expected(value: Any, ctx: dict[str, Any], where: str) -> Any:
    """Expected JSON values are templates too (each string, at any depth)."""
    if isinstance(value, str):
        return render(value, ctx, where=where, shell=False)
    if isinstance(value, dict):
        return {k: _expected(v, ctx, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expected(v, ctx, where) for v in value]
    return value


def _http(
    check: pb.HttpCheckSpec, loc: tuple[str | int, ...], ctx: dict[str, Any], files: Files
) -> CheckSpec:
    where = files.playbook.where((*loc, "url"))
    url = render(check.url, ctx, where=where, shell=False, allow_secrets=True)
    try:
        has_userinfo = check_url(url)
    except ValueError as exc:
        what, _, expected = str(exc).partition("; ")
        raise InputError(where, what, expected) from None
    headers: dict[str, str] = {}
    for name, template in check.headers.items():
        header_where = files.playbook.where((*loc, "headers", name))
        if "\n" in template or "\r" in template:
            raise InputError(header_where, f"header {name} holds a line break", "a value on one line")
        value = render(template, ctx, where=header_where, shell=False, allow_secrets=True)
        if "\n" in value or "\r" in value:
            raise InputError(header_where, f"header {name} holds a line break", "a value on one line")
        headers[name] = value
    if has_userinfo and any(name.lower() == "authorization" for name in headers):
        raise InputError(
            where,
            "the url carries user:password@ and the check also sends an Authorization header",
            "one of the two",
        )
    contains = None
    if check.contains is not None:
        contains = render(check.contains, ctx, where=files.playbook.where((*loc, "contains")), shell=False)
    json_fields = None
    if check.json_fields is not None:
        json_fields = _expected(check.json_fields, ctx, files.playbook.where((*loc, "json")))
    return CheckSpec(
        kind="http",
        label=f"http {url}",
        timeout=check.timeout,
        url=url,
        status=check.status,
        contains=contains,
        json_fields=json_fields,
        headers=headers,
    )


def _checks(checks: Sequence[pb.AnyCheck], key: str, ctx: dict[str, Any], files: Files) -> list[CheckSpec]:
    result: list[CheckSpec] = []
    for i, check in enumerate(checks):
        if isinstance(check, pb.HttpCheck):
            result.append(_http(check.http, (key, i, "http"), ctx, files))
        elif isinstance(check, pb.TcpCheck):
            where = files.playbook.where((key, i, "tcp", "address"))
            address = render(check.tcp.address, ctx, where=where, shell=False)
            try:
                check_address(address)
            except ValueError as exc:
                what, _, expected = str(exc).partition("; ")
                raise InputError(where, what, expected) from None
            result.append(
                CheckSpec(
                    kind="tcp",
                    label=f"tcp {address}:{check.tcp.port}",
                    timeout=check.tcp.timeout,
                    address=address,
                    port=check.tcp.port,
                )
            )
        else:
            where = files.playbook.where((key, i, "command", "run"))
            command = render(check.command.run, ctx, where=where, shell=True, allow_secrets=True)
            result.append(
                CheckSpec(
                    kind="command",
                    label=f"command {_not_blank(command, where, 'run')}",
                    timeout=check.command.timeout,
                    command=command,
                )
            )
    return result


def check_names_once(inventory: Inventory, files: Files) -> None:
    """Two hosts of a pool must not share a load balancer server or a VM: the rollout would drain or
    revert the other one."""
    for pool_name, pool in inventory.pools.items():
        seen: dict[tuple[str, str], str] = {}
        for name, host in pool.hosts.items():
            for field, value in (("lb_server", host.lb_server or name), ("domain", host.domain or name)):
                other = seen.setdefault((field, value), name)
                if other != name:
                    loc: tuple[str, ...] = ("pools", pool_name, "hosts", name)
                    raise InputError(
                        files.inventory.where((*loc, field) if getattr(host, field) else loc),
                        f"host {name}'s {field} {value!r} is also host {other}'s",
                        f"each host of a pool its own {field}",
                    )


def _hypervisor_files(pool: Pool, pool_name: str, files: Files) -> None:
    if isinstance(pool.hypervisor, LibvirtConfig):
        for field in ("known_hosts", "key"):
            path = getattr(pool.hypervisor, field)
            if path is not None and not path.is_file():
                raise InputError(
                    files.inventory.where(("pools", pool_name, "hypervisor", field)),
                    f"hypervisor {field.replace('_', ' ')} file {path} does not exist",
                    "create it or fix the path (relative paths count from the inventory's folder)",
                )


def _snapshot_name(playbook: pb.Playbook, ctx: dict[str, Any], files: Files) -> str:
    import re

    where = files.playbook.where(("snapshot", "name"))
    name = render(playbook.snapshot.name, ctx, where=where, shell=False)
    if not re.match(SNAPSHOT_NAME, name):
        raise InputError(
            where,
            f"snapshot name {name!r} is not a valid name",
            "letters, digits and _ . : + -, starting with a letter or digit, at most 128",
        )
    return name


def _host(
    name: str,
    host: Host,
    playbook: pb.Playbook,
    inventory: Inventory,
    files: Files,
    rollout_id: str,
    secrets: dict[str, SecretSpec],
    missing: list[str] | None,
) -> HostSpec:
    pool_name = playbook.pool
    pool = inventory.pools[pool_name]
    merged = host.ssh.over(pool.ssh.over(DEFAULT_SSH))  # the host's fields, then the pool's, then defaults
    ssh = _ssh(name, host, pool, pool_name, merged, files)
    ctx = _host_context(
        name,
        host,
        merged,
        pool_name,
        pool,
        inventory,
        playbook,
        rollout_id,
        secrets,
    )
    snapshot_name = _snapshot_name(playbook, ctx, files)
    sessions = playbook.drain.sessions
    probe = warn = ""
    if sessions is not None:
        where = files.playbook.where(("drain", "sessions", "probe"))
        probe = render(sessions.probe, ctx, where=where, shell=True, allow_secrets=True)
        if sessions.warn:
            where = files.playbook.where(("drain", "sessions", "warn"))
            warn = render(sessions.warn, ctx, where=where, shell=True, allow_secrets=True)
    snapshot_commands: dict[str, str] = {}
    if isinstance(pool.hypervisor, CommandSnapshotConfig):
        snap_ctx = {**ctx, "snapshot": snapshot_name}
        for action in ("create", "revert", "delete"):
            where = files.inventory.where(("pools", pool_name, "hypervisor", action))
            snapshot_commands[action] = render(
                getattr(pool.hypervisor, action), snap_ctx, where=where, shell=True, allow_secrets=True
            )
    base_dir = files.playbook.path.resolve().parent
    return HostSpec(
        name=name,
        address=host.address,
        domain=host.domain or name,
        lb_server=host.lb_server or name,
        ssh=ssh,
        steps=_steps(playbook, ctx, files, base_dir, missing),
        checks=_checks(playbook.checks, "checks", ctx, files),
        revert_checks=_checks(
            playbook.old_version_checks(),
            "revert_checks" if playbook.revert_checks is not None else "checks",
            ctx,
            files,
        ),
        snapshot_name=snapshot_name,
        snapshot_commands=snapshot_commands,
        session_probe=probe,
        session_warn=warn,
    )


def _only(only_hosts: Sequence[str], pool: Pool, pool_name: str) -> None:
    for name in only_hosts:
        if name not in pool.hosts:
            raise InputError(
                "--hosts",
                f"host {name!r} is not in pool {pool_name!r}",
                f"one of: {', '.join(pool.hosts)}",
            )
    twice = sorted({n for n in only_hosts if list(only_hosts).count(n) > 1})
    if twice:
        raise InputError("--hosts", f"host {twice[0]!r} is named twice", "each host once")


def resolve(
    playbook: pb.Playbook,
    inventory: Inventory,
    files: Files,
    *,
    rollout_id: str,
    only_hosts: Sequence[str] = (),
    missing: list[str] | None = None,
) -> RolloutSpec:
    """The whole rollout, resolved. Upload sources that do not exist are an error, unless ``missing``
    is given (by `plan`, which must work before the vendor's archive arrives): they are listed there."""
    pool = inventory.pools.get(playbook.pool)
    if pool is None:
        raise InputError(
            files.playbook.where(("pool",)),
            f"pool {playbook.pool!r} is not in {files.inventory.path}",
            f"one of: {', '.join(sorted(inventory.pools))}",
        )
    check_names_once(inventory, files)
    _hypervisor_files(pool, playbook.pool, files)
    _only(only_hosts, pool, playbook.pool)
    secrets = _secrets(playbook, inventory, playbook.pool, files)
    hosts = {
        name: _host(name, host, playbook, inventory, files, rollout_id, secrets, missing)
        for name, host in pool.hosts.items()
        if not only_hosts or name in only_hosts
    }
    used = {n for h in hosts.values() for n in _secret_names(h)}
    # The longest a snapshot call may take: the command provider's timeout, or libvirt's call bound.
    snapshot_timeout = pool.hypervisor.timeout if not isinstance(pool.hypervisor, NoSnapshots) else 120.0
    batches = plan_batches(list(hosts), playbook.strategy.batches)
    _check_strategy(playbook, len(pool.hosts), len(batches), files)
    spec = RolloutSpec(
        rollout_id=rollout_id,
        name=playbook.name,
        pool=playbook.pool,
        playbook_path=files.playbook.path.resolve(),
        inventory_path=files.inventory.path.resolve(),
        batches=batches,
        drain_timeout=playbook.drain.timeout,
        drain_on_timeout=playbook.drain.on_timeout,
        snapshot_enabled=playbook.snapshot.enabled and pool.hypervisor.type != "none",
        snapshot_memory=playbook.snapshot.memory,
        snapshot_retention=playbook.snapshot.retention,
        snapshot_timeout=snapshot_timeout,
        stabilize_interval=playbook.stabilize.interval,
        stabilize_successes=playbook.stabilize.successes,
        stabilize_timeout=playbook.stabilize.timeout,
        on_failure=playbook.strategy.on_failure,
        failure_budget=playbook.strategy.failure_budget,
        max_unavailable=playbook.strategy.max_unavailable,
        min_healthy=playbook.strategy.min_healthy,
        capacity_timeout=playbook.strategy.capacity_timeout,
        approve_after=playbook.strategy.approve_after,
        approval_timeout=playbook.strategy.approval_timeout,
        on_approval_timeout=playbook.strategy.on_approval_timeout,
        four_eyes=playbook.strategy.four_eyes,
        deadlines=playbook.deadlines,
        window=playbook.window,
        sessions=playbook.drain.sessions,
        loadbalancer=pool.loadbalancer,
        hypervisor=pool.hypervisor,
        hosts=hosts,
        secrets={name: declared for name, declared in secrets.items() if name in used},
    )
    _check_window(spec, files)
    return spec


def _secret_names(host: HostSpec) -> set[str]:
    texts = [host.session_probe, host.session_warn, *host.snapshot_commands.values()]
    texts += [s.command for s in host.steps]
    for check in [*host.checks, *host.revert_checks]:
        texts += [check.command, check.url, *check.headers.values()]
    return {name for text in texts for name in names_in(text)}


def _check_window(spec: RolloutSpec, files: Files) -> None:
    """A window whose longest opening is shorter than one host's expected time would hold the rollout
    for ever: the gate starts a host only when the window has that much time left."""
    if spec.window is None:
        return
    longest = spec.window.parsed().longest_opening().total_seconds()
    need = expected_host_seconds(spec, [])
    if longest < need:
        raise InputError(
            files.playbook.where(("window", "allowed")),
            f"the window's longest opening is {longest / 60:g} min, but a host is expected to need up to "
            f"{need / 60:g} min (drain timeout + update step timeouts + stabilize timeout + 1 min), so no "
            "host could ever start",
            "a longer opening, or shorter timeouts",
        )


def _check_strategy(playbook: pb.Playbook, pool_size: int, batch_count: int, files: Files) -> None:
    """What only makes sense against the pool: a capacity floor that leaves something to drain, approval
    after batches that exist."""
    strategy = playbook.strategy
    floor = capacity_floor_of(strategy.min_healthy, strategy.max_unavailable, pool_size)
    if floor >= pool_size and (strategy.min_healthy is not None or strategy.max_unavailable is not None):
        field = "min_healthy" if strategy.min_healthy is not None else "max_unavailable"
        raise InputError(
            files.playbook.where(("strategy", field)),
            f"the capacity floor is {floor} of the pool's {pool_size} hosts, so no server could "
            "ever be drained",
            f"a {field} that leaves at least one server to update",
        )
    late = [n for n in strategy.approve_after if n >= batch_count]
    if late:
        raise InputError(
            files.playbook.where(("strategy", "approve_after")),
            f"approve_after {late} but the plan has {batch_count} batches (no batch follows)",
            f"batch numbers from 1 to {batch_count - 1}",
        )
    if strategy.four_eyes and not strategy.approve_after:
        raise InputError(
            files.playbook.where(("strategy", "four_eyes")),
            "four_eyes is set but no batch needs an approval, so there is nobody to keep apart",
            "approve_after with the batches to approve, e.g. [1] after the canary",
        )
