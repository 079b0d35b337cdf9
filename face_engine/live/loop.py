"""The analysis loop of a camera worker: the newest frame of each stream, at the stream's rate,
the streams due at the same moment analysed in one engine batch.

A stream is due ``1 / fps`` seconds after its last analysis began and once its slot holds a frame
not analysed yet. When the engine cannot keep up, streams are simply analysed less often: frames
are dropped in their slots, never queued, so the lag (frame received → analysed) does not grow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from face_engine.live.appearances import AppearanceTracker, TrackedFace
from face_engine.live.frames import Frame, LatestFrame
from face_engine.types import ImageFaces

logger = logging.getLogger(__name__)

# A stream's result callback: the frame, its tracked faces, the engine's per-stage timings (ms).
ResultFn = Callable[[Frame, list[TrackedFace], dict[str, float]], None]


@dataclass
class Stream:
    key: Any
    slot: LatestFrame
    appearances: AppearanceTracker
    fps: float = 5.0
    min_face_size: int = 80
    on_result: ResultFn | None = None
    next_due: float = 0.0  # time.monotonic()
    analysed: int = 0
    errors: int = 0
    lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))  # frame received → analysed
    _times: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    # The loop's thread analyses the stream while others may remove it: its appearances are
    # touched under this lock only.
    lock: threading.Lock = field(default_factory=threading.Lock)
    removed: bool = False  # set under the lock: a batch in flight must not open appearances after it

    @property
    def fps_analysed(self) -> float:
        """Analysed frames per second over about the last 2 s."""
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class LiveLoop:
    """Runs in one thread (``run``) until ``stop``; streams are added and removed from others."""

    def __init__(self, pipeline: Any, *, poll: float = 0.005, after_batch: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.poll = poll
        # Called after each analysed batch: the caller's clean-up (the service returns the
        # database connection its matcher used to the pool).
        self.after_batch = after_batch
        self._streams: dict[Any, Stream] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def add(self, stream: Stream) -> None:
        with self._lock:
            self._streams[stream.key] = stream

    def remove(self, key: Any, *, close: bool = True) -> Stream | None:
        """Stop analysing a stream; its appearances are closed, unless ``close`` is False (the
        stream is handed over to another process, which continues them)."""
        with self._lock:
            stream = self._streams.pop(key, None)
        if stream is not None:
            with stream.lock:
                stream.removed = True
                if close:
                    stream.appearances.close_all()
        return stream

    def streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams.values())

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            if not self.step():
                self._stop.wait(self.poll)

    def step(self) -> int:
        """Analyse every stream that is due, in one batch per minimum face size; end appearances
        whose faces are gone. Returns how many frames were analysed."""
        now = time.monotonic()
        due = [s for s in self.streams() if now >= s.next_due and s.slot.has_new()]
        batch: list[tuple[Stream, Frame]] = []
        for stream in due:
            frame = stream.slot.take(timeout=0)
            if frame is not None:
                stream.next_due = max(stream.next_due + 1.0 / stream.fps, now)
                batch.append((stream, frame))
        for size in sorted({s.min_face_size for s, _ in batch}):
            self._analyse([(s, f) for s, f in batch if s.min_face_size == size], size)
        if batch and self.after_batch is not None:
            self.after_batch()
        wall = time.time()
        for stream in self.streams():
            with stream.lock:
                if not stream.removed:
                    stream.appearances.tick(wall)
        return len(batch)

    def _analyse(self, batch: list[tuple[Stream, Frame]], min_face_size: int) -> None:
        images = []
        for stream, frame in list(batch):
            try:
                images.append(frame.image())
            except Exception:  # noqa: BLE001 - a frame the decoder gave but cannot convert
                logger.exception("stream %s: frame %d could not be converted", stream.key, frame.seq)
                stream.errors += 1
                batch.remove((stream, frame))
        if not batch:
            return
        # HOG alone where the detector is hog+cnn: most frames of a stream are empty, and the face
        # HOG misses in one frame (turned away) it finds in the next.
        results: list[ImageFaces] = self.pipeline.analyze(images, min_face_size=min_face_size, cnn_fallback=False)
        done = time.monotonic()
        for (stream, frame), image, result in zip(batch, images, results, strict=True):
            stream.analysed += 1
            stream._times.append(done)
            stream.lag_ms.append((done - frame.received_mono) * 1000.0)
            try:
                with stream.lock:
                    if stream.removed:  # stopped while this batch was being analysed
                        continue
                    tracked = stream.appearances.observe(result.faces, image, at=frame.received_at)
                if stream.on_result is not None:
                    stream.on_result(frame, tracked, result.timings_ms)
            except Exception:  # noqa: BLE001 - one stream's failure (its sink, its matcher) spares the others
                logger.exception("stream %s: analysing frame %d failed", stream.key, frame.seq)
                stream.errors += 1
