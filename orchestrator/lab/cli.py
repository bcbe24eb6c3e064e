"""``lab up|status|down``: the VM lab from the command line (attached to the main CLI as ``lab``)."""

from __future__ import annotations

import json
import logging

import click

from orchestrator.errors import OrchestratorError
from orchestrator.lab import lab as labmod


class LabFailed(click.ClickException):
    exit_code = 2  # what a ConfigError exits with: the environment is not fit for a lab

    def __init__(self, error: OrchestratorError) -> None:
        super().__init__(str(error))


def _print(info: labmod.LabInfo) -> None:
    net = info.network
    click.echo(f"inventory: {info.inventory}")
    click.echo(f"frontend:  {info.frontend_url}")
    click.echo(
        f"network:   namespace {net.namespace}{'' if net.present else ' (MISSING)'}: bridge {net.bridge} "
        f"{net.gateway}, libvirtd and QEMU in {info.libvirtd_netns or '(libvirtd not running)'}"
    )
    click.echo(
        f"host link: {net.veth_host} {net.host_address} <-> {net.veth_lab} {net.lab_address}; {net.route}"
    )


@click.group()
def lab() -> None:
    """The local lab: real QEMU VMs under the lab's own libvirtd, behind a real HAProxy (needs root)."""


@lab.command()
@click.option(
    "--vms", default=4, show_default=True, type=click.IntRange(1, labmod.MAX_VMS), help="Number of VMs."
)
def up(vms: int) -> None:
    """Start the lab (idempotent) and print the inventory path and the frontend URL."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        info = labmod.up(vms)
    except OrchestratorError as exc:
        raise LabFailed(exc) from exc
    _print(info)
    for host in info.hosts:
        click.echo(f"  {host.name:6} {host.address:15} {host.domain:10} {host.state}")
    click.echo("timings:   " + ", ".join(f"{k} {v:.1f} s" for k, v in info.timings.items()))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: inventory, frontend URL, hosts, network.")
def status(as_json: bool) -> None:
    """Show the running lab; exit 1 when there is none."""
    try:
        info = labmod.status()
    except OrchestratorError as exc:
        raise LabFailed(exc) from exc
    if info is None:
        if as_json:
            click.echo(json.dumps(None))
        else:
            click.echo("no lab is running; start one with: orchestrator lab up")
        raise click.exceptions.Exit(1)
    if as_json:
        data = info.to_json()
        data.pop("timings", None)
        click.echo(json.dumps(data, indent=2))
        return
    _print(info)
    click.echo(f"libvirt:   {info.uri}")
    for host in info.hosts:
        click.echo(f"  {host.name:6} {host.address:15} {host.domain:10} {host.state}")


@lab.command()
def down() -> None:
    """Stop and remove every VM, libvirtd, HAProxy and the lab's network namespace with its veth, bridge
    and taps (cached image and keys stay)."""
    try:
        labmod.down()
    except OrchestratorError as exc:
        raise LabFailed(exc) from exc
    click.echo("lab is down")
