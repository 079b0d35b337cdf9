"""Where jobs run: Celery when CELERY_BROKER_URL is set, else an in-process thread pool."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_futures: list[Future] = []


def uses_celery() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def dispatch(job_id) -> None:
    if uses_celery():
        from jobs.tasks import run_job

        run_job.delay(str(job_id))
        return
    _futures.append(_get_pool().submit(_run_in_thread, job_id))
    _futures[:] = [f for f in _futures if not f.done()]


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.JOBS_WORKERS, thread_name_prefix="jobs")
        return _pool


def _run_in_thread(job_id) -> None:
    from jobs.services import job_run

    close_old_connections()
    try:
        job_run(job_id)
    except Exception:  # noqa: BLE001 - the job row records the failure
        logger.exception("in-process job %s failed", job_id)
    finally:
        close_old_connections()
        from django.db import connection

        connection.close()


def wait_idle(timeout: float = 120.0) -> None:
    """Block until every in-process job handed out so far has finished (tests, commands)."""
    for future in list(_futures):
        future.result(timeout=timeout)
