"""The preflight's one line about HAProxy reloads: whether the configuration keeps server states across
them (from the inventory's optional loadbalancer.config), a warning when it does not or when there is
no way to tell, and never a refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.app.submit import load_spec, preflight
from orchestrator.model.inventory import HAProxyConfig
from tests.unit.fakes import (
    GOOD_INVENTORY,
    FakeLoadBalancer,
    FakeRemotePool,
    rollout_spec,
    write_inputs,
)

KEEPS = """\
global
    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners
    server-state-file /var/lib/haproxy/server-state
defaults
    mode http
    load-server-state-from-file global
backend app
    server web1 10.0.0.1:8080 check
"""


class Runtime:
    def __init__(self) -> None:
        self.lb = FakeLoadBalancer()
        self.lb.admin["web1"] = self.lb.state("web1").admin
        self.remotes = FakeRemotePool()

    def loadbalancer(self, config: HAProxyConfig) -> FakeLoadBalancer:
        return self.lb


def lines(config: Path | None) -> list[str]:
    spec = rollout_spec(
        loadbalancer=HAProxyConfig(socket=Path("/run/haproxy.sock"), backend="app", config=config)
    )
    runtime: Any = Runtime()
    return preflight(spec, runtime)


def test_a_config_that_keeps_states_says_so(tmp_path: Path) -> None:
    (tmp_path / "haproxy.cfg").write_text(KEEPS)
    got = lines(tmp_path / "haproxy.cfg")
    assert got[0] == "web1: UP, ssh ok"
    assert got[1] == (
        "loadbalancer: reloads keep server states (load-server-state-from-file global, server-state-file "
        "/var/lib/haproxy/server-state; save them before each reload)"
    )


def test_a_config_that_forgets_them_warns_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(KEEPS.replace("    load-server-state-from-file global\n", ""))
    (warning,) = [line for line in lines(cfg) if line.startswith("warning:")]
    assert warning == (
        f"warning: {cfg}: a reload of HAProxy forgets the server states of backend app (no "
        "load-server-state-from-file in defaults or the backend); the orchestrator re-asserts them anyway, "
        "within a poll"
    )


def test_without_a_config_it_cannot_tell_and_says_the_states_are_watched_anyway() -> None:
    warning = lines(None)[-1]
    assert warning.startswith("warning: cannot tell whether HAProxy keeps server states across reloads")
    assert "no loadbalancer.config in the inventory" in warning and "re-asserts them anyway" in warning


def test_an_unreadable_config_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    warning = lines(tmp_path / "missing.cfg")[-1]
    assert warning.startswith(f"warning: cannot read loadbalancer.config {tmp_path / 'missing.cfg'}")


def test_the_config_path_counts_from_the_inventory_folder(tmp_path: Path) -> None:
    inventory = GOOD_INVENTORY.replace("backend: app}", "backend: app, config: lb/haproxy.cfg}")
    book, inv = write_inputs(tmp_path, inventory=inventory)
    spec = load_spec(book, inv)
    assert spec.loadbalancer.config == tmp_path / "lb" / "haproxy.cfg"
