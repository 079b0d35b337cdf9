"""Celery tasks: call a service, retry 3 times with a 60 s backoff (as events/tasks.py)."""

from celery import shared_task


@shared_task(
    bind=True, acks_late=True, autoretry_for=(Exception,), max_retries=3,
    retry_backoff=60, retry_backoff_max=600, retry_jitter=False,
)
def purge_unknowns(self) -> dict[str, int]:
    """Run periodically (Celery beat, the camera workers, or cron with the management command)."""
    from dataclasses import asdict

    from unknowns.retention import unknowns_purge

    return asdict(unknowns_purge())
