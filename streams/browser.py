"""The process-wide pieces behind browser streams (streams.consumers.LiveConsumer).

Every WebSocket connection of this process shares them: one bounded thread pool for the blocking
work (decoding, inference, the tracker), so that a hundred connections start two threads on a
two-core machine rather than a hundred, and one event writer, so that browser appearances are
recorded like a camera's without each connection owning a writer thread. ``BrowserStream`` is
one connection's tracker, fed from that pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections

from face_engine.live.appearances import AppearanceTracker
from streams.matching import gallery_matcher, live_policy
from streams.sink import EventWriter, SourceContext

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_writer: EventWriter | None = None


def pool_size() -> int:
    # One thread per core: more would only make the frames of every connection slower (the
    # detector and the embedder are CPU-bound), fewer would leave cores idle.
    return os.cpu_count() or 1


def inference_pool() -> ThreadPoolExecutor:
    """The threads that run browser frames' blocking work (created on first use)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=pool_size(), thread_name_prefix="live-browser")
        return _pool


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the inference pool, awaited without blocking the event loop.

    Cancelling the await does not stop a call already running (threads cannot be interrupted):
    whatever it guards must tolerate that (the consumer holds its tracker's lock there)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(inference_pool(), functools.partial(_as_request, fn, *args, **kwargs))


def _as_request(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One call treated as Django treats a request: the thread's database connection goes back at
    the end (to the pool on PostgreSQL). A pool thread would otherwise hold one for its whole life,
    out of the pool's reach and open past the end of a test database."""
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def event_writer() -> EventWriter:
    """The writer of every browser stream's events in this process (started on first use; its
    thread is a daemon, and what it has not written when the process ends is lost, as with a
    camera worker killed)."""
    global _writer
    with _lock:
        if _writer is None:
            writer = EventWriter()
            writer.start()
            _writer = writer
        return _writer


class BrowserStream:
    """One gallery's appearances on this connection. The tracker is used from the pool's threads,
    and a call cancelled by a disconnect may still be running there: hence the lock, and
    ``closed`` so that no frame opens an appearance after the stream was closed."""

    def __init__(self, *, gallery_id: int | None, user) -> None:
        writer = event_writer()
        context = SourceContext(source="browser", source_name=f"browser:{user.get_username()}", user_id=user.pk,
                                gallery_id=gallery_id)
        self.gallery_id = gallery_id
        self.tracker = AppearanceTracker(match=gallery_matcher(gallery_id), policy=live_policy(),
                                         emit=lambda event: writer.put(event, context))
        self.lock = threading.Lock()
        self.closed = False

    def observe(self, faces, image, at: float):
        with self.lock:
            return [] if self.closed else self.tracker.observe(faces, image, at=at)

    def tick(self) -> None:
        with self.lock:
            if not self.closed:
                self.tracker.tick(time.time())

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.tracker.close_all()
