"""A rollout's own state machine: pure batch decisions, the gate before each drain, the coordinator
that moves from host to host and batch to batch, and recovery after a crash."""
