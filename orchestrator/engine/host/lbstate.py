"""What the load balancer must hold a host in, state by state, and putting it right when it does not.

The load balancer's state is watched, not assumed: a reload or restart of HAProxy without saved server
states forgets every admin state set at runtime, and a server in `maint` comes back in service. The
host pipeline confirms before each handler (machine.py) and the reconciler guard of every worker
confirms each round (engine/rollout/watch.py), because a long update command blocks its host's tick.

Out of service: drain while draining (maint there is further out still, and left alone), maint from
out_of_pool to verifying, and in failed_out (a reload must never put a broken server back). Back in
service: ready in returning and restoring once `ready` was set; only the pipeline asserts that, never
the guard, because a guard acting on a state read a moment ago could otherwise put a server that just
failed back in service. The guard's mistakes can only go the safe way (out), and a returning host's
next poll undoes them.
"""

from __future__ import annotations

from orchestrator.adapters.loadbalancers.base import AdminState, LoadBalancer, ServerState
from orchestrator.model.progress import Progress
from orchestrator.model.states import HostState

S = HostState
A = AdminState

HELD_OUT: dict[HostState, AdminState] = {
    S.DRAINING: A.DRAIN,
    S.OUT_OF_POOL: A.MAINT,
    S.SNAPSHOTTING: A.MAINT,
    S.UPDATING: A.MAINT,
    S.CHECKING: A.MAINT,
    S.REVERTING: A.MAINT,
    S.VERIFYING: A.MAINT,
    S.FAILED_OUT: A.MAINT,
}
# Where ready is expected once the state's entry action (ready) was done.
RETURNING = frozenset({S.RETURNING, S.RESTORING})


def expected(state: HostState, p: Progress) -> AdminState | None:
    """What the load balancer must say of the host now; None where it is not this rollout's to say
    (pending, done, or before the state's entry action: draining before drain, returning before ready)."""
    if state in (S.DRAINING, *RETURNING) and not p.entered:
        return None
    if state in RETURNING:
        return A.READY
    return HELD_OUT.get(state)


def held_out(state: HostState, p: Progress) -> AdminState | None:
    """``expected`` where that is out of service: what the reconciler guard may re-assert."""
    want = expected(state, p)
    return want if want is not A.READY else None


def drifted(seen: ServerState, want: AdminState) -> bool:
    if want is A.DRAIN:
        return seen.admin is A.READY  # maint keeps it further out than drain
    return seen.admin is not want


def put(lb: LoadBalancer, server: str, want: AdminState) -> None:
    {A.DRAIN: lb.drain, A.MAINT: lb.maint, A.READY: lb.ready}[want](server)


def what_was_seen(seen: ServerState, state: HostState, want: AdminState) -> str:
    return (
        f"server {seen.server} was {seen.admin.value} ({seen.status}) in {state.value}, "
        f"expected {want.value}: set {want.value} again"
    )
