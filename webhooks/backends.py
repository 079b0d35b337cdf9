"""Where delivery attempts run, as jobs/backends.py: Celery when CELERY_BROKER_URL is set (a task per
attempt, a retry is the same task sent with a countdown), otherwise in this process: a pool of
WEBHOOK_WORKERS threads, so a receiver that hangs holds one thread for at most its timeout and
never the others, and one scheduler thread holding the retries in a heap until they are due. The
scheduler also runs the periodic pass (re-dispatch of deliveries a dead process had queued, purge
of old logs) every SWEEP_SECONDS."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0


def uses_celery() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def dispatch(delivery_id, delay: float = 0.0) -> None:
    """Attempt the delivery in ``delay`` seconds (callers dispatch after their write commits)."""
    if uses_celery():
        from webhooks.tasks import deliver_webhook

        deliver_webhook.apply_async(args=[str(delivery_id)], countdown=max(0.0, delay))
        return
    scheduler().submit(str(delivery_id), delay)


def _run(function, *args) -> None:
    close_old_connections()
    try:
        function(*args)
    except Exception:  # noqa: BLE001 - the delivery row records attempts; anything else is logged
        logger.exception("webhook work %s%s failed", getattr(function, "__name__", function), args)
    finally:
        connection.close()


def _attempt(delivery_id: str) -> None:
    from webhooks.services import delivery_attempt

    delivery_attempt(delivery_id=delivery_id)


def _periodic() -> None:
    from webhooks.services import deliveries_purge, deliveries_redispatch_due

    deliveries_redispatch_due()
    deliveries_purge()


class Scheduler:
    """Attempts due now go to the pool at once; later ones wait in a heap for the scheduler thread."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="webhooks")
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()  # ties: first scheduled, first sent
        self._futures: set[Future] = set()
        self._condition = threading.Condition()
        self._next_sweep = time.monotonic() + SWEEP_SECONDS
        self._thread = threading.Thread(target=self._loop, name="webhooks-scheduler", daemon=True)
        self._thread.start()

    def submit(self, delivery_id: str, delay: float = 0.0) -> None:
        with self._condition:
            if delay <= 0:
                self._start(_attempt, delivery_id)
            else:
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), delivery_id))
                self._condition.notify()

    def _start(self, function, *args) -> None:
        # Under self._condition.
        future = self._pool.submit(_run, function, *args)
        self._futures.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._condition:
            self._futures.discard(future)
            self._condition.notify_all()

    def _loop(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    self._start(_attempt, heapq.heappop(self._heap)[2])
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_SECONDS
                    self._start(_periodic)
                wake = min(self._heap[0][0] if self._heap else self._next_sweep, self._next_sweep)
                self._condition.wait(timeout=max(0.0, wake - now))

    def wait_idle(self, timeout: float) -> None:
        """Until nothing is running or waiting for a retry; TimeoutError past ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self._condition:
            while self._heap or self._futures:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"webhook deliveries still busy after {timeout} s "
                                       f"({len(self._futures)} running, {len(self._heap)} waiting)")
                self._condition.wait(timeout=left)

    def clear(self) -> None:
        """Forget the retries waiting (tests: a retry must not run in the next test's database)."""
        with self._condition:
            self._heap.clear()


_scheduler: Scheduler | None = None
_scheduler_lock = threading.Lock()


def scheduler() -> Scheduler:
    """This process's scheduler, started on first use (a process that never delivers starts none)."""
    global _scheduler
    with _scheduler_lock:
        if _scheduler is None:
            _scheduler = Scheduler(settings.WEBHOOK_WORKERS)
        return _scheduler


def wait_idle(timeout: float = 60.0) -> None:
    """Block until every in-process attempt handed out so far, retries included, has finished."""
    if _scheduler is not None:
        _scheduler.wait_idle(timeout)
