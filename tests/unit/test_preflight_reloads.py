"""The preflight's lines about HAProxy reloads: whether the configuration keeps server states across
them (from the inventory's optional loadbalancer.config), a warning when it does not or when there is
no way to tell, and never a refusal; and how long an old process may live (`hard-stop-after`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.loadbalancers.haproxy import HAProxy
from orchestrator.adapters.loadbalancers.haproxy_parse import hard_stop_after
from orchestrator.app.submit import load_spec, preflight
from orchestrator.model.inventory import HAProxyConfig
from tests.unit.fakes import (
    GOOD_INVENTORY,
    FakeLoadBalancer,
    FakeRemotePool,
    rollout_spec,
    write_inputs,
)

DATA = Path(__file__).parent / "data"
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
    (warning,) = [line for line in lines(cfg) if "forgets the server states" in line]
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


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("5000", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0)],
)
def test_hard_stop_after_is_read_in_haproxys_time_format(value: str, seconds: float) -> None:
    assert hard_stop_after(KEEPS.replace("global\n", f"global\n    hard-stop-after {value}\n")) == seconds


@pytest.mark.parametrize(
    "config",
    [
        KEEPS,
        KEEPS.replace("global\n", "global\n    hard-stop-after soon\n"),
        "defaults\n    hard-stop-after 5s\n",
    ],
    ids=["not set", "not a time", "outside global"],
)
def test_hard_stop_after_unset_or_unreadable_is_none(config: str) -> None:
    assert hard_stop_after(config) is None


def test_a_config_with_hard_stop_after_says_drains_wait_for_old_processes(tmp_path: Path) -> None:
    (tmp_path / "haproxy.cfg").write_text(KEEPS.replace("global\n", "global\n    hard-stop-after 30s\n"))
    assert lines(tmp_path / "haproxy.cfg")[-1] == (
        "loadbalancer: old processes stop 30s after a reload at the latest (hard-stop-after); "
        "a drain that follows a reload waits for them"
    )


def test_a_config_without_hard_stop_after_warns_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(KEEPS)
    warning = lines(cfg)[-1]
    assert warning.startswith(f"warning: {cfg}: no hard-stop-after in global: after a reload the old HAProxy")
    assert warning.endswith("set one (e.g. hard-stop-after 30s)") and "\n" not in warning


def test_the_haproxy_adapter_bounds_older_processes_by_its_uptime(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(KEEPS.replace("global\n", "global\n    hard-stop-after 10s\n"))
    info = (DATA / "haproxy_show_info.txt").read_text()  # Uptime_sec: 1
    lb = HAProxy(socket=tmp_path / "none.sock", backend="app", config=cfg)
    lb.command = lambda line: info  # type: ignore[method-assign]
    assert lb.instance().older_gone_in == 10.0  # 10 s after a start 1-2 s ago, at the latest
    old = HAProxy(socket=tmp_path / "none.sock", backend="app", config=tmp_path / "missing.cfg")
    old.command = lambda line: info  # type: ignore[method-assign]
    assert old.instance().older_gone_in is None
