"""What a host's tick found that concerns the whole rollout, carried out by the coordinator: the rollout
paused for a cause of its own, and the pause lifted when the cause goes away.

- the load balancer (or, after a snapshot, the hypervisor) unreachable: a host blocked on it pauses
  the rollout, its next good tick lifts the pause;
- the window closed, the hypervisor not answering before a snapshot: the gate holds a host with that
  cause, and a host passing the gate lifts it;
- the store gone: every outage recorded once it answers again; one past its budget also pauses the
  rollout, and the next tick of a host that goes on lifts the pause.
"""

from __future__ import annotations

from orchestrator.engine.host.ports import Adapters
from orchestrator.engine.rollout.outage import PatientStore
from orchestrator.engine.rollout.ports import RolloutStore
from orchestrator.errors import HypervisorError
from orchestrator.model.progress import Progress
from orchestrator.model.spec import HostSpec
from orchestrator.model.states import PauseCause, RolloutState

RUNNING_ONLY = frozenset({RolloutState.RUNNING})
# Pauses the gate sets when it holds a host, and lifts when a host passes it.
SELF_LIFTING = frozenset({PauseCause.WINDOW, PauseCause.HYPERVISOR})


def hypervisor_down(adapters: Adapters, host: HostSpec) -> str | None:
    """Why the host's hypervisor does not answer (a cheap bounded call), or None when it does."""
    snapshots = adapters.snapshots(host)
    if snapshots is None:
        return None
    try:
        snapshots.list(host.domain)
    except HypervisorError as exc:
        return str(exc) if exc.unanswered or exc.transient else None
    return None


def record_outage(store: RolloutStore, rollout_id: str) -> None:
    """Once the store answers again after an outage: record it in the journal; past its budget, also
    pause the rollout for it (the next tick of a host that goes on lifts the pause)."""
    if not isinstance(store, PatientStore):
        return
    lasted = store.outage_to_report(rollout_id)
    if lasted is None:
        return
    why = (
        f"the store did not answer for {lasted:.1f}s (outage budget {store.budget:g}s); every host held "
        "where it was"
    )
    store.record_action(rollout_id, "store_outage", "orchestrator", why)
    if lasted <= store.budget:
        return
    store.transition_rollout(
        rollout_id, RolloutState.PAUSED, reason=why, cause=PauseCause.STORE, only_from=RUNNING_ONLY
    )


def follow_host(store: RolloutStore, rollout_id: str, progress: Progress) -> None:
    """What a host's tick found that concerns the whole rollout: the load balancer unreachable pauses it
    (saying where each host is) and its return resumes it; the gate holding a host for the window pauses
    it, and a host passing the gate resumes it."""
    rollout = store.rollout(rollout_id)
    if rollout is None:
        return
    if progress.blocked:
        where = ", ".join(f"{h.name} {h.state.value}" for h in store.hosts(rollout_id))
        store.transition_rollout(
            rollout_id,
            RolloutState.PAUSED,
            reason=f"{progress.blocked}; retrying. Hosts: {where}",
            cause=PauseCause(progress.blocked_by or PauseCause.LOADBALANCER),
            only_from=RUNNING_ONLY,
        )
    elif rollout.pause_cause is PauseCause.LOADBALANCER:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.LOADBALANCER)
    elif rollout.pause_cause is PauseCause.STORE and not progress.blocked:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=PauseCause.STORE)
    held = PauseCause(progress.held_by) if progress.held_by else None
    if held is not None and held in SELF_LIFTING:
        store.transition_rollout(
            rollout_id, RolloutState.PAUSED, reason=progress.held_why, cause=held, only_from=RUNNING_ONLY
        )
    elif progress.passed_gate and rollout.pause_cause is not None and rollout.pause_cause in SELF_LIFTING:
        store.transition_rollout(rollout_id, RolloutState.RUNNING, only_cause=rollout.pause_cause)
