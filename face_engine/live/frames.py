"""Frames of a live stream and the one-slot hand-over between a reader and an analyser.

A camera delivers frames faster than they are analysed (25 fps in, 5 analysed): the reader puts
every frame into a ``LatestFrame`` slot, which keeps only the newest; the analyser takes it when it
is ready. A frame it never took is counted as dropped, so lag never grows: old frames are thrown
away, not queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from face_engine.types import RGBImage


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame of a stream.

    ``pixels`` converts lazily: a reader that decodes 25 frames a second converts only the ones
    the analyser takes (a 720p YUV → RGB conversion costs a few milliseconds).
    """

    seq: int  # 1, 2, 3… per source, across reconnections
    pts: float  # seconds into the stream (a video file's own timeline; else seconds since open)
    received_at: float  # time.time() when the reader got it: when the frame "happened" for latency
    received_mono: float  # time.monotonic() of the same moment (intervals, lag)
    _convert: Callable[[], RGBImage] = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: list[RGBImage] = field(default_factory=list, repr=False)

    @classmethod
    def from_array(cls, image: RGBImage, *, seq: int, pts: float = 0.0, received_at: float | None = None,
                   received_mono: float | None = None) -> Frame:
        return cls(seq=seq, pts=pts, received_at=time.time() if received_at is None else received_at,
                   received_mono=time.monotonic() if received_mono is None else received_mono,
                   _convert=lambda: image)

    def image(self) -> RGBImage:
        """The frame as an H×W×3 uint8 RGB array (converted once)."""
        with self._lock:
            if not self._cache:
                self._cache.append(self._convert())
            return self._cache[0]


class LatestFrame:
    """Thread-safe slot holding the newest frame. ``put`` replaces (counting the frame replaced
    as dropped when nobody took it); ``take`` waits for a frame newer than the last one taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken_seq = 0
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None and self._frame.seq > self._taken_seq:
                self.dropped += 1
            self._frame = frame
            self.received += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not taken yet, waiting up to ``timeout`` seconds; None on timeout or
        once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed and (self._frame is None or self._frame.seq <= self._taken_seq):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._closed:
                return None
            assert self._frame is not None
            self._taken_seq = self._frame.seq
            return self._frame

    def peek(self) -> Frame | None:
        """The newest frame, taken or not (for status: the time of the last frame)."""
        with self._cond:
            return self._frame

    def has_new(self) -> bool:
        with self._cond:
            return self._frame is not None and self._frame.seq > self._taken_seq

    def close(self) -> None:
        """Wake every waiter; ``take`` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
