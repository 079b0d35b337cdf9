"""Celery tasks of core: call a service, retry 3 times with a 60 s backoff (as the other apps' tasks)."""

from celery import shared_task


@shared_task(
    bind=True, acks_late=True, autoretry_for=(Exception,), max_retries=3,
    retry_backoff=60, retry_backoff_max=600, retry_jitter=False,
)
def compact_index_log(self) -> dict[str, int]:
    """Run hourly (Celery beat, the camera workers, or cron with `manage.py compact_index_log`)."""
    from core.index.log import index_log_compact

    return index_log_compact()
