"""Playbook + inventory -> RolloutSpec. Everything a user can get wrong is found here, before any
server is touched: unknown pool or host, missing files, undefined template names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.model import playbook as pb
from orchestrator.model.inventory import CommandSnapshotConfig, Host, Inventory, Pool, SSHConfig
from orchestrator.model.plan import capacity_floor_of, plan_batches
from orchestrator.model.spec import CheckSpec, HostSpec, RolloutSpec, SSHSpec, StepSpec
from orchestrator.model.templating import render
from orchestrator.model.yamlfile import LineMap

DEFAULT_SSH = SSHConfig(user="root", port=22, connect_timeout=10.0)


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
    }


def _ssh(name: str, host: Host, pool: Pool, pool_name: str, files: Files) -> SSHSpec:
    ssh = host.ssh.over(pool.ssh.over(DEFAULT_SSH))
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


def _steps(playbook: pb.Playbook, ctx: dict[str, Any], files: Files, base_dir: Path) -> list[StepSpec]:
    steps: list[StepSpec] = []
    for i, step in enumerate(playbook.update):
        where = files.playbook.where(("update", i))
        if isinstance(step, pb.RunStep):
            command = render(step.run, ctx, where=where, shell=True)
            steps.append(
                StepSpec(kind="run", label=f"run {command[:60]}", timeout=step.timeout, command=command)
            )
        else:
            src = Path(render(str(step.upload.src), ctx, where=where, shell=False))
            src = src if src.is_absolute() else base_dir / src
            if not src.is_file():
                raise InputError(
                    files.playbook.where(("update", i, "upload", "src")),
                    f"upload source {src} does not exist",
                    "fix the path (relative paths count from the playbook's folder)",
                )
            dest = render(step.upload.dest, ctx, where=where, shell=False)
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


def _checks(checks: Sequence[pb.CheckSpec], key: str, ctx: dict[str, Any], files: Files) -> list[CheckSpec]:
    result: list[CheckSpec] = []
    for i, check in enumerate(checks):
        where = files.playbook.where((key, i))
        if isinstance(check, pb.HttpCheck):
            url = render(check.http.url, ctx, where=where, shell=False)
            result.append(
                CheckSpec(
                    kind="http",
                    label=f"http {url}",
                    timeout=check.http.timeout,
                    url=url,
                    status=check.http.status,
                    contains=check.http.contains,
                    json_fields=check.http.json_fields,
                )
            )
        elif isinstance(check, pb.TcpCheck):
            address = render(check.tcp.address, ctx, where=where, shell=False)
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
            command = render(check.command.run, ctx, where=where, shell=True)
            result.append(
                CheckSpec(
                    kind="command",
                    label=f"command {command[:60]}",
                    timeout=check.command.timeout,
                    command=command,
                )
            )
    return result


def resolve(
    playbook: pb.Playbook,
    inventory: Inventory,
    files: Files,
    *,
    rollout_id: str,
    only_hosts: Sequence[str] = (),
) -> RolloutSpec:
    pool = inventory.pools.get(playbook.pool)
    if pool is None:
        raise InputError(
            files.playbook.where(("pool",)),
            f"pool {playbook.pool!r} is not in {files.inventory.path}",
            f"one of: {', '.join(sorted(inventory.pools))}",
        )
    for name in only_hosts:
        if name not in pool.hosts:
            raise InputError(
                "--hosts",
                f"host {name!r} is not in pool {playbook.pool!r}",
                f"one of: {', '.join(pool.hosts)}",
            )
    base_dir = files.playbook.path.resolve().parent
    hosts: dict[str, HostSpec] = {}
    snapshot_name = ""
    for name, host in pool.hosts.items():
        if only_hosts and name not in only_hosts:
            continue
        ssh = _ssh(name, host, pool, playbook.pool, files)
        ctx = _host_context(
            name,
            host,
            host.ssh.over(pool.ssh.over(DEFAULT_SSH)),
            playbook.pool,
            pool,
            inventory,
            playbook,
            rollout_id,
        )
        snapshot_name = render(
            playbook.snapshot.name, ctx, where=files.playbook.where(("snapshot", "name")), shell=False
        )
        sessions = playbook.drain.sessions
        probe = warn = ""
        if sessions is not None:
            where = files.playbook.where(("drain", "sessions"))
            probe = render(sessions.probe, ctx, where=where, shell=True)
            warn = render(sessions.warn, ctx, where=where, shell=True) if sessions.warn else ""
        snapshot_commands: dict[str, str] = {}
        if isinstance(pool.hypervisor, CommandSnapshotConfig):
            snap_ctx = {**ctx, "snapshot": snapshot_name}
            for action in ("create", "revert", "delete"):
                where = files.inventory.where(("pools", playbook.pool, "hypervisor", action))
                snapshot_commands[action] = render(
                    getattr(pool.hypervisor, action), snap_ctx, where=where, shell=True
                )
        hosts[name] = HostSpec(
            name=name,
            address=host.address,
            domain=host.domain or name,
            lb_server=host.lb_server or name,
            ssh=ssh,
            steps=_steps(playbook, ctx, files, base_dir),
            checks=_checks(playbook.checks, "checks", ctx, files),
            revert_checks=_checks(
                playbook.old_version_checks(),
                "revert_checks" if playbook.revert_checks is not None else "checks",
                ctx,
                files,
            ),
            snapshot_commands=snapshot_commands,
            session_probe=probe,
            session_warn=warn,
        )
    snapshot_timeout = (
        pool.hypervisor.timeout if isinstance(pool.hypervisor, CommandSnapshotConfig) else 120.0
    )
    batches = plan_batches(list(hosts), playbook.strategy.batches)
    _check_strategy(playbook, len(pool.hosts), len(batches), files)
    return RolloutSpec(
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
        snapshot_name=snapshot_name,
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
        deadlines=playbook.deadlines,
        window=playbook.window,
        sessions=playbook.drain.sessions,
        loadbalancer=pool.loadbalancer,
        hypervisor=pool.hypervisor,
        hosts=hosts,
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
