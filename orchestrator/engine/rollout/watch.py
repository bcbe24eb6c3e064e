"""The load balancer's state, watched from the rollout: the guard each reconciler round runs over every
active rollout, and what a tick does when it finds HAProxy restarted or reloaded.

A host's own tick confirms its server before each handler (engine/host/machine.py), but a long update
command blocks that tick for minutes; the guard covers that time. Both re-assert only out-of-service
states (see engine/host/lbstate.py for why never `ready` here). Neither holds the host's lease (the
tick running a command holds it): just before setting a server, the host's state is read again, and
the setting is skipped if that state no longer wants it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from orchestrator.adapters.loadbalancers.base import LoadBalancer
from orchestrator.engine.host import lbstate
from orchestrator.engine.rollout.ports import RolloutStore
from orchestrator.errors import LoadBalancerError
from orchestrator.model.inventory import HAProxyConfig
from orchestrator.model.progress import Progress
from orchestrator.model.records import Rollout

log = logging.getLogger(__name__)

# The load balancer adapter for an inventory's config (engine.wiring.Runtime.loadbalancer).
LoadBalancers = Callable[[HAProxyConfig], LoadBalancer]


def reassert(store: RolloutStore, rollout: Rollout, lb: LoadBalancer) -> tuple[list[str], list[str]]:
    """Read the load balancer once and set every server this rollout holds out back where it must be.
    Returns what was re-asserted and what was found in place, one ``host state`` item each."""
    held = [h for h in store.hosts(rollout.id) if lbstate.held_out(h.state, h.progress)]
    if not held:
        return [], []
    seen = {s.server: s for s in lb.servers()}
    fixed: list[str] = []
    kept: list[str] = []
    for host in held:
        want = lbstate.held_out(host.state, host.progress)
        server = rollout.spec.hosts[host.name].lb_server
        current = seen.get(server)
        if want is None or current is None:  # a server gone from the backend: its tick reports it
            continue
        if not lbstate.drifted(current, want):
            kept.append(f"{host.name} {current.admin.value}")
            continue
        now = store.host(rollout.id, host.name)  # its tick may have moved it meanwhile
        if lbstate.held_out(now.state, now.progress) is not want:
            continue
        lbstate.put(lb, server, want)
        was = f"{current.admin.value}, {current.status}"
        fixed.append(f"{host.name} {want.value} (was {was}, in {now.state.value})")
    return fixed, kept


def guard(store: RolloutStore, loadbalancers: LoadBalancers) -> list[str]:
    """One round over every active rollout: what was re-asserted, one line each (also action rows)."""
    lines: list[str] = []
    for rollout in store.active_rollouts():
        try:
            fixed, _ = reassert(store, rollout, loadbalancers(rollout.spec.loadbalancer))
        except LoadBalancerError as exc:  # the hosts' ticks pause the rollout for an unreachable one
            log.warning("guard of %s: %s", rollout.id, exc)
            continue
        for item in fixed:
            line = f"load balancer lost a state this rollout set: re-asserted {item}"
            log.warning("guard of %s: %s", rollout.id, line)
            store.record_action(rollout.id, "lb_reasserted", "reconciler", line)
            lines.append(f"{rollout.id} {line}")
    return lines


def notice_new_instance(store: RolloutStore, rollout: Rollout, lb: LoadBalancer, p: Progress) -> None:
    """At the start of a host's tick: if another HAProxy process answers than this host saw last time
    (a reload or a restart), every server this rollout holds out is re-asserted before anything else,
    and an action row says so. The instance seen is kept in the host's progress."""
    try:
        now = lb.instance()
    except LoadBalancerError:
        return  # unreachable: the pipeline's own calls pause the host for it
    before, before_pid = p.lb_instance, p.lb_pid
    p.lb_instance, p.lb_pid = now.identity, now.pid
    if not before or before == now.identity:
        return
    try:
        fixed, kept = reassert(store, rollout, lb)
    except LoadBalancerError as exc:
        fixed, kept = [], [f"could not look: {exc}"]
    said = f"HAProxy restarted or reloaded (pid {before_pid} -> {now.pid}): "
    if fixed:
        said += "re-asserted " + ", ".join(fixed)
    else:
        said += "nothing to re-assert"
    if kept:
        said += "; in place: " + ", ".join(kept)
    (log.warning if fixed else log.info)("%s: %s", rollout.id, said)
    store.record_action(rollout.id, "lb_restarted", "orchestrator", said)
