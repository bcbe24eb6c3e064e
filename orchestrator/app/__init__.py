"""Application services: what the CLI, the workers and the lab do with the engine (submit a rollout,
follow it, operate on it). No click, no Celery, no composition root here: callers hand in the store,
the runtime and the scheduler."""
