"""Threads that run the views, in two lanes: the light one (everything quick: CRUD, auth, health,
jobs, events, the admin) and the engine one (views that run the face engine on the request path),
so a quick request never waits behind recognitions for a thread.

Each lane is a bounded thread pool; the event loop hands it a request and awaits the answer. A
request waits for a thread only when every thread of its lane is busy; in the engine lane that wait
is bounded too (``Lanes.engine_admission``): past it the request is refused at once as overloaded.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from core.prometheus import SERVING_LANE_SECONDS
from core.serving.state import Overloaded, lower_priority, register, request_abandoned

T = TypeVar("T")


class _Call:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "waiting"  # -> running, or -> abandoned (the client left before a thread took it)


class Lane:
    def __init__(self, name: str, threads: int, *, nice: int = 0) -> None:
        if threads < 1:
            raise ValueError(f"lane {name}: at least one thread, got {threads}")
        self.name, self.threads = name, threads
        self._lock = threading.Lock()
        self._waiting = 0  # handed to the lane, no thread yet
        self._running = 0
        self._served = 0
        self._abandoned = 0  # requests whose client left before their answer
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"lane-{name}",
                                            initializer=lower_priority, initargs=(nice,))

    def backlog(self) -> tuple[int, bool]:
        """(requests waiting for one of this lane's threads, whether every thread is taken)."""
        with self._lock:
            return self._waiting, self._waiting + self._running >= self.threads

    async def run(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` on one of the lane's threads, in a copy of the caller's context (Django's
        script prefix and urlconf travel with it). The caller's cancellation (the client
        disconnected) is told to the request (``request_abandoned``: the engine skips it); a
        request whose client left before a thread took it is not run at all."""
        abandoned = threading.Event()
        context = contextvars.copy_context()
        context.run(request_abandoned.set, abandoned)
        call = _Call()
        with self._lock:
            self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, context.run, self._call, call, time.monotonic(), fn, *args)
        except asyncio.CancelledError:
            abandoned.set()
            with self._lock:
                self._abandoned += 1
                if call.state == "waiting":
                    call.state = "abandoned"
                    self._waiting -= 1
            raise

    def _call(self, call: _Call, queued: float, fn: Callable[..., T], *args: Any) -> T | None:
        with self._lock:
            if call.state == "abandoned":
                return None
            call.state = "running"
            self._waiting -= 1
            self._running += 1
        SERVING_LANE_SECONDS.labels(lane=self.name).observe(time.monotonic() - queued)
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1
                self._served += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"threads": self.threads, "running": self._running, "waiting": self._waiting,
                    "served": self._served, "abandoned": self._abandoned}


class Lanes:
    """A process's two lanes. ``queue`` returns the engine's queue (a Batcher), asked how long a
    request waiting for an engine thread would wait. The engine lane starts with the first request
    that needs it; with ``engine_threads`` 0 it has twice the queue's batch, at least 8 threads (a
    full batch gathers while the next one's requests are parsed and the last one's answered)."""

    def __init__(self, *, light_threads: int, engine_threads: int, engine_nice: int,
                 queue: Callable[[], Any]) -> None:
        self.light = Lane("light", light_threads)
        register("lanes", "light", self.light)
        self._engine_threads, self._engine_nice = engine_threads, engine_nice
        self._engine: Lane | None = None
        self._queue = queue
        self._lock = threading.Lock()

    @property
    def engine(self) -> Lane:
        with self._lock:
            if self._engine is None:
                threads = self._engine_threads or max(8, 2 * self._queue().limits.max_images)
                self._engine = Lane("engine", threads, nice=self._engine_nice)
                register("lanes", "engine", self._engine)
            return self._engine

    def engine_admission(self) -> Overloaded | None:
        """None when an engine request may go to the engine lane; else its refusal, made before
        any thread parses it: at least one image, behind the requests already waiting for a
        thread (one image each: their bodies are not parsed yet) and the engine's queue. Under
        overload most requests are refused: this way a refusal costs the event loop a few
        microseconds instead of a thread's parsing of the upload (the view's own admission, with
        the request's real image count, comes after)."""
        waiting, _ = self.engine.backlog()
        refusal: Overloaded | None = self._queue().admission(1, ahead=waiting)
        return refusal
