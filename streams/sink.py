"""Writes a stream's appearances to the database as events, from a thread of its own.

The analysis never waits on the database: snapshots go into an outbox and a writer thread records
them. While the database is down the outbox keeps them (the latest snapshot of each appearance,
the newest crop merged in) and the writer retries with backoff; when it is back, every decided
appearance still in the outbox is written. Events carry the uid their stream chose, so a write
retried after an error that hid its success updates the row instead of adding one.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
from django.db import DatabaseError, close_old_connections, connection
from PIL import Image

from face_engine.live.appearances import AppearanceEvent
from people.models import embedding_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """Where a stream's events come from."""

    source: str  # "camera" or "browser"
    source_name: str
    camera_id: int | None = None
    user_id: int | None = None
    gallery_id: int | None = None


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _when(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def record(event: AppearanceEvent, context: SourceContext):
    """One snapshot → its Event row (created or updated)."""
    from events.services import event_upsert

    distance = None if event.distance is None or np.isinf(event.distance) else round(float(event.distance), 6)
    confidence = event.confidence
    return event_upsert(
        uid=event.uid, source=context.source, camera_id=context.camera_id, source_name=context.source_name,
        user_id=context.user_id, gallery_id=context.gallery_id, track_id=event.track_id, kind=event.kind,
        person_id=event.person_id, distance=distance,
        confidence=None if confidence is None else round(confidence, 6), threshold=event.threshold,
        first_seen=_when(event.first_seen), named_at=_when(event.named_at), last_seen=_when(event.last_seen),
        closed_at=_when(event.closed_at), frames_seen=event.frames_seen, frames_recognised=event.frames_recognised,
        face_box=event.face_box.as_dict(), face_size=event.face_size, sharpness=event.sharpness,
        embedding=embedding_bytes(event.embedding), crop_jpeg=jpeg(event.crop) if event.crop is not None else None,
    )


def _merged(older: AppearanceEvent, newer: AppearanceEvent) -> AppearanceEvent:
    """The newer snapshot, keeping the older's crop when the newer brings none (not written yet)."""
    crop = newer.crop if newer.crop is not None else older.crop
    return replace(newer, crop=crop)


class EventWriter:
    """An outbox of appearance snapshots and the thread that writes them."""

    def __init__(self, *, max_pending: int = 10_000, retry_min: float = 0.5, retry_max: float = 10.0) -> None:
        self.max_pending = max_pending
        self.retry_min, self.retry_max = retry_min, retry_max
        self._pending: OrderedDict[uuid.UUID, tuple[AppearanceEvent, SourceContext]] = OrderedDict()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failures = 0
        self.dropped = 0

    def put(self, event: AppearanceEvent, context: SourceContext) -> None:
        with self._cond:
            old = self._pending.pop(event.uid, None)
            if old is not None:
                event = _merged(old[0], event)
            elif len(self._pending) >= self.max_pending:
                lost, _ = self._pending.popitem(last=False)
                self.dropped += 1
                logger.error("event outbox full (%d): appearance %s dropped", self.max_pending, lost)
            self._pending[event.uid] = (event, context)
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending (for up to ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline and self._thread is not None:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty; False if it is not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return not self._pending

    def _run(self) -> None:
        delay = self.retry_min
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stop:
                        self._cond.wait(1.0)
                    if self._stop:
                        return
                    uid, (event, context) = next(iter(self._pending.items()))
                try:
                    row = record(event, context)
                except DatabaseError as exc:
                    self.failures += 1
                    reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
                    logger.warning("event %s not written (%s); retrying in %.1f s", uid, reason, delay)
                    reset_connection()
                    with self._cond:
                        self._cond.wait(delay)
                    delay = min(self.retry_max, delay * 2)
                    continue
                except Exception:  # noqa: BLE001 - a snapshot that can never be written must not block the rest
                    logger.exception("event %s could not be recorded; dropped", uid)
                    self.dropped += 1
                    row = None
                delay = self.retry_min
                with self._cond:
                    current = self._pending.get(uid)
                    if current is not None and current[0] is event:  # else a newer snapshot came meanwhile
                        del self._pending[uid]
                    self.written += row is not None
                    idle = not self._pending
                    self._cond.notify_all()
                if idle:  # the connection goes back to the pool (PostgreSQL) until the next event
                    close_old_connections()
        finally:
            connection.close()


def reset_connection() -> None:
    """After a database error: drop this thread's connection, so the next query opens a new one."""
    try:
        close_old_connections()
        connection.close()
    except DatabaseError:
        pass
