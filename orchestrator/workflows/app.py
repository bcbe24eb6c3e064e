"""The Celery app, and the scheduler that sends its messages. Configured once from Settings; tasks live
in tasks.py and stay thin. Messages are sent by task name, so nothing here imports the tasks.

Why these settings: a rollout step must survive a worker that dies in the middle of it, so tasks are
acknowledged late and rejected (requeued) when the worker is lost, and a worker takes one message at a
time. Waits are countdown messages, never sleeping workers.
"""

from __future__ import annotations

from celery import Celery

from orchestrator.config import Settings

app = Celery("orchestrator", include=["orchestrator.workflows.tasks"])


def configure(settings: Settings) -> Celery:
    broker = settings.broker_url or "memory://"
    app.conf.update(
        broker_url=broker,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # The in-memory transport polls; the default of 1 s would add a second to every step. On Redis
        # or SQS, an unacknowledged message comes back after visibility_timeout: longer than any step.
        broker_transport_options=(
            {"polling_interval": 0.005} if broker.startswith("memory") else {"visibility_timeout": 12 * 3600}
        ),
        # A lost broker connection does not cancel a running step: its host lease keeps any redelivered
        # copy from acting until it ends, and the rotated tick token then makes that copy stale.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Celery 5.7 cuts the prefetch count after a lost broker connection and restores it as acks
        # succeed; with a late-acked tick in flight across a broker restart, its ack fails and the
        # worker was seen to stop taking messages for good (tests/e2e/test_faults.py). With a prefetch
        # equal to the concurrency there is nothing to over-fetch anyway.
        worker_enable_prefetch_count_reduction=False,
        task_default_queue=settings.queue,
        orch_database_url=settings.database_url,
    )
    app.set_current()
    app.set_default()
    return app


class CeleryScheduler:
    """Delivers a host's next tick (with its countdown) and a rollout's start over the broker."""

    def __init__(self, celery: Celery = app) -> None:
        self.celery = celery

    def send_tick(self, rollout_id: str, host: str, token: str, delay: float = 0.0) -> None:
        self.celery.send_task(
            "orchestrator.host_tick", (rollout_id, host, token), countdown=delay if delay > 0 else None
        )

    def start(self, rollout_id: str) -> None:
        self.celery.send_task("orchestrator.start_rollout", (rollout_id,))
