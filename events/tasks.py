"""Celery tasks: call a service, retry 3 times with a 60 s backoff (as jobs/tasks.py)."""

from celery import shared_task


@shared_task(
    bind=True, acks_late=True, autoretry_for=(Exception,), max_retries=3,
    retry_backoff=60, retry_backoff_max=600, retry_jitter=False,
)
def purge_event_crops(self) -> int:
    """Run periodically (Celery beat or cron with the management command); safe to repeat."""
    from events.services import event_crops_purge

    return event_crops_purge()
