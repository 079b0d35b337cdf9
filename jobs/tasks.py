"""Celery tasks: take ids, call a service, retry 3 times with a 60 s backoff."""

from celery import shared_task


@shared_task(
    bind=True, acks_late=True, autoretry_for=(Exception,), max_retries=3,
    retry_backoff=60, retry_backoff_max=600, retry_jitter=False,
)
def run_job(self, job_id: str) -> str:
    from jobs.services import job_run

    return job_run(job_id).state


@shared_task(
    bind=True, acks_late=True, autoretry_for=(Exception,), max_retries=3,
    retry_backoff=60, retry_backoff_max=600, retry_jitter=False,
)
def generate_face_encoding(self, face_id: int) -> str | None:
    from jobs.services import generate_face_encoding as encode

    return encode(face_id)
