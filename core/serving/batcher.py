"""The images of concurrent requests gathered into one engine call, behind a bounded queue.

Each request's thread submits its images and waits; one thread per process (the batcher's) takes
the queued requests in arrival order, up to ``max_images`` images (a request is never split: one
larger than that runs alone), waiting at most ``wait_ms`` after the first arrived for more, runs
the engine once on all of them and hands each request its own results. A request is refused at
once (``Overloaded``, a 503) when ``queue_max`` requests already wait, or when the wait before its
batch would start, estimated from the images ahead of it and the throughput of the recent batches,
is over ``max_wait_ms``; a request still waiting when that limit passes is refused then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from core.prometheus import SERVING_BATCH_IMAGES, SERVING_QUEUE_SECONDS, SERVING_REFUSALS
from core.serving.state import (
    ClientGone,
    Overloaded,
    lower_priority,
    register,
    release_connections,
    request_abandoned,
    request_refusal,
)

logger = logging.getLogger("core.serving")
Item = TypeVar("Item")
Result = TypeVar("Result")

_RECENT_BATCHES = 16  # the throughput estimate: images over seconds of the latest batches
_RECENT_WAITS = 2000  # queue waits kept for the percentiles of GET /api/stats/


@dataclass(frozen=True)
class Limits:
    max_images: int  # images per engine call (a request with more runs alone)
    wait_ms: float  # how long a batch waits for more requests once its first has arrived
    max_wait_ms: float  # the longest a request may wait for its batch to start
    queue_max: int  # requests waiting (their batch not started) before the next is refused

    def __post_init__(self) -> None:
        if self.max_images < 1 or self.queue_max < 1 or self.wait_ms < 0 or self.max_wait_ms <= 0:
            raise ValueError(f"bad batcher limits: {self}")


class _Ticket:
    __slots__ = ("items", "size", "arrived", "state", "done", "results", "error", "abandoned")

    def __init__(self, items: list[Any], abandoned: threading.Event | None) -> None:
        self.items, self.size = items, len(items)
        self.arrived = time.monotonic()
        self.state = "queued"  # queued -> running -> done, or queued -> done (refused, abandoned)
        self.done = threading.Event()
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self.abandoned = abandoned

    def finish(self, results: list[Any] | None = None, error: BaseException | None = None) -> None:
        self.results, self.error, self.state = results or [], error, "done"
        self.done.set()


class Batcher(Generic[Item, Result]):
    """``submit(items)`` returns ``run(items)`` for those items, computed in one call of ``run``
    with the items of the requests queued with them. ``run`` must return one result per item, in
    order; a bad item should fail alone inside it (an exception fails every request of the batch,
    so the batch is then run again request by request: only the guilty one fails)."""

    def __init__(self, name: str, run: Callable[[list[Item]], Sequence[Result]], limits: Limits, *,
                 nice: int = 0, on_start: Callable[[], None] | None = None) -> None:
        self.name, self.limits, self.nice = name, limits, nice
        self._run, self._on_start = run, on_start
        self._pid: int | None = None
        self._reset()
        register("queues", name, self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Ticket] = deque()
        self._queued_images = 0
        self._running_images = 0
        self._running_since = 0.0
        self._recent: deque[tuple[int, float]] = deque(maxlen=_RECENT_BATCHES)
        self._batch_sizes: Counter[int] = Counter()
        self._refusals: Counter[str] = Counter()
        self._waits_ms: deque[float] = deque(maxlen=_RECENT_WAITS)
        self._batches = self._images = 0
        self._thread: threading.Thread | None = None
        # Set once the thread has run on_start (loaded the models): waits are counted from then.
        self._ready = threading.Event()
        self._ready_at = 0.0

    # --- the request's side ---------------------------------------------------------------------

    def submit(self, items: Sequence[Item]) -> list[Result]:
        items = list(items)
        if not items:
            return []
        self._start_if_needed()
        release_connections()  # before queueing: a request waiting for the engine holds none
        ticket = _Ticket(items, request_abandoned.get())
        with self._lock:
            refusal = self._admission(ticket.size)
            if refusal is None:
                self._queue.append(ticket)
                self._queued_images += ticket.size
                self._wake.notify()
        if refusal is not None:
            raise self.refused(refusal)
        self._wait(ticket)
        if isinstance(ticket.error, Overloaded):  # its wait passed the limit
            raise self.refused(ticket.error)
        if ticket.error is not None:
            raise ticket.error
        return ticket.results

    def _admission(self, size: int, ahead: int = 0) -> Overloaded | None:
        """``ahead``: requests not queued yet that will be before this one (waiting for a thread),
        one image each."""
        waiting = len(self._queue) + ahead
        if waiting >= self.limits.queue_max:
            return Overloaded("queue_full", self._estimate_ms(size, ahead), waiting=waiting,
                              limit=self.limits.queue_max)
        estimate = self._estimate_ms(size, ahead)
        if estimate > self.limits.max_wait_ms:
            return Overloaded("max_wait", estimate, limit=self.limits.max_wait_ms)
        return None

    def refused(self, refusal: Overloaded) -> Overloaded:
        """Count ``refusal`` (here and in Prometheus) and note it on the request (its Retry-After)."""
        with self._lock:
            self._refusals[refusal.reason] += 1
        SERVING_REFUSALS.labels(queue=self.name, reason=refusal.reason).inc()
        request_refusal.set(refusal)
        return refusal

    def _wait(self, ticket: _Ticket) -> None:
        self._ready.wait()  # the models are loading: nobody could have been served sooner
        limit_s = self.limits.max_wait_ms / 1000.0
        if ticket.done.wait(timeout=max(0.0, self._waiting_since(ticket) + limit_s - time.monotonic())):
            return
        with self._lock:
            if ticket.state == "queued":  # the limit passed before its batch started
                self._remove(ticket)
                waited = (time.monotonic() - self._waiting_since(ticket)) * 1000.0
                ticket.finish(error=Overloaded("max_wait", waited, limit=self.limits.max_wait_ms))
        ticket.done.wait()  # refused just now, or its batch runs: the results come

    def _waiting_since(self, ticket: _Ticket) -> float:
        return max(ticket.arrived, self._ready_at)

    def _remove(self, ticket: _Ticket) -> None:
        self._queue.remove(ticket)
        self._queued_images -= ticket.size

    # --- the estimate -----------------------------------------------------------------------------

    def _throughput(self) -> float | None:
        images = sum(n for n, _ in self._recent)
        seconds = sum(s for _, s in self._recent)
        return images / seconds if images and seconds > 0 else None

    def _estimate_ms(self, size: int, ahead: int = 0) -> float:
        """The wait before a request of ``size`` images would start, behind the queue and ``ahead``
        more requests of one image: what is left of the running batch, then the batches that
        leave before its own (packed as ``_next_batch`` packs them), at the recent throughput. 0
        before any batch was measured."""
        rate = self._throughput()
        if rate is None:
            return 0.0
        left = 0.0
        if self._running_images:
            left = max(0.0, self._running_images / rate - (time.monotonic() - self._running_since))
        before = packed = 0
        for images in [ticket.size for ticket in self._queue] + [1] * ahead:
            if packed and packed + images > self.limits.max_images:
                before, packed = before + packed, 0
            packed += images
        if packed and packed + size > self.limits.max_images:
            before += packed
        return (left + before / rate) * 1000.0

    def estimate_wait_ms(self, size: int = 1) -> float:
        with self._lock:
            return self._estimate_ms(size)

    def admission(self, size: int = 1, ahead: int = 0) -> Overloaded | None:
        """What ``submit`` would answer now for ``size`` images behind ``ahead`` more requests
        (None: admitted), for a caller that refuses before the request reaches it (the handler,
        when every engine thread is busy); counted when it is a refusal."""
        with self._lock:
            refusal = self._admission(size, ahead)
        return None if refusal is None else self.refused(refusal)

    # --- the batcher's thread -----------------------------------------------------------------------

    _starting = threading.Lock()

    def _start_if_needed(self) -> None:
        """The thread starts with the first request of each process (threads do not survive a
        fork: a child drops whatever its parent had queued)."""
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._starting:
            if self._pid == os.getpid() and self._thread is not None:
                return
            if self._pid is not None:
                self._reset()
            self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.name}", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _loop(self) -> None:
        lower_priority(self.nice)  # the engine's threads started from here inherit it
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception:  # noqa: BLE001 - the batch's own call fails the same way, per request
                logger.exception("%s batcher: on_start failed", self.name)
        self._ready_at = time.monotonic()
        self._ready.set()
        while True:
            try:
                self._execute(self._next_batch())
            except Exception:  # noqa: BLE001 - the thread must outlive any batch
                logger.exception("%s batcher: a batch failed outside the engine", self.name)

    def _next_batch(self) -> list[_Ticket]:
        limits = self.limits
        with self._wake:
            while True:
                while not self._queue:
                    self._wake.wait()
                deadline = self._queue[0].arrived + limits.wait_ms / 1000.0
                while self._queue and self._queued_images < limits.max_images:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                self._drop_gone()
                if not self._queue:
                    continue
                batch = [self._queue.popleft()]
                while self._queue and sum(t.size for t in batch) + self._queue[0].size <= limits.max_images:
                    batch.append(self._queue.popleft())
                self._queued_images -= sum(t.size for t in batch)
                for ticket in batch:
                    ticket.state = "running"
                self._running_images = sum(t.size for t in batch)
                self._running_since = time.monotonic()
                return batch

    def _drop_gone(self) -> None:
        """Requests whose client left, or whose wait passed the limit, leave the queue unanswered
        by the engine (their own thread may not have woken yet)."""
        now = time.monotonic()
        for ticket in list(self._queue):
            waited_ms = (now - self._waiting_since(ticket)) * 1000.0
            if ticket.abandoned is not None and ticket.abandoned.is_set():
                self._remove(ticket)
                ticket.finish(error=ClientGone())
            elif waited_ms > self.limits.max_wait_ms:
                self._remove(ticket)
                ticket.finish(error=Overloaded("max_wait", waited_ms, limit=self.limits.max_wait_ms))

    def _execute(self, batch: list[_Ticket]) -> None:
        items = [item for ticket in batch for item in ticket.items]
        start = time.monotonic()
        results: list[Any] | None = None
        error: BaseException | None = None
        try:
            answered = list(self._run(items))
            if len(answered) != len(items):
                raise RuntimeError(f"{self.name}: {len(answered)} results for {len(items)} items")
            results = answered
        except Exception as exc:  # noqa: BLE001 - handed to the requests
            error = exc
        seconds = time.monotonic() - start
        with self._lock:
            self._running_images = 0
            self._recent.append((len(items), seconds))
            self._batches += 1
            self._images += len(items)
            self._batch_sizes[len(items)] += 1
            for ticket in batch:
                self._waits_ms.append((start - ticket.arrived) * 1000.0)
        SERVING_BATCH_IMAGES.labels(queue=self.name).observe(len(items))
        for ticket in batch:
            SERVING_QUEUE_SECONDS.labels(queue=self.name).observe(start - ticket.arrived)
        if error is not None and len(batch) > 1:
            logger.warning("%s batcher: a batch of %d requests failed (%s); running them one by one",
                           self.name, len(batch), error)
            for ticket in batch:
                self._execute_alone(ticket)
            return
        offset = 0
        for ticket in batch:
            ticket.finish(None if results is None else results[offset:offset + ticket.size], error)
            offset += ticket.size

    def _execute_alone(self, ticket: _Ticket) -> None:
        try:
            ticket.finish(list(self._run(ticket.items)))
        except Exception as exc:  # noqa: BLE001
            ticket.finish(error=exc)

    # --- what GET /api/stats/ shows -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rate = self._throughput()
            waits = np.fromiter(self._waits_ms, float) if self._waits_ms else None
            return {
                "limits": {"max_images": self.limits.max_images, "wait_ms": self.limits.wait_ms,
                           "max_wait_ms": self.limits.max_wait_ms, "queue_max": self.limits.queue_max},
                "waiting_requests": len(self._queue),
                "waiting_images": self._queued_images,
                "running_images": self._running_images,
                "images_per_second": round(rate, 3) if rate else None,
                "estimated_wait_ms": round(self._estimate_ms(1), 1),
                "batches": self._batches,
                "images": self._images,
                "batch_sizes": {str(size): count for size, count in sorted(self._batch_sizes.items())},
                "refusals": dict(sorted(self._refusals.items())),
                "queue_wait_ms": None if waits is None else {
                    "p50": round(float(np.percentile(waits, 50)), 1), "p95": round(float(np.percentile(waits, 95)), 1),
                    "max": round(float(waits.max()), 1), "count": int(waits.size)},
            }
