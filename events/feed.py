"""The live feed's source in each ASGI process: one thread that reads new and changed events and
camera states from the database and hands them to the connected dashboards (``ws/events/``).

Why the database and not the event signal: events are recorded by the camera workers, which are
other processes (other machines, in production); the database is what every process shares,
without Redis. One poll serves every connection of the process, and only while there is one:
every FEED_POLL_SECONDS an indexed query for events updated since the last poll, and once a
second the cameras (a handful of rows), sent when their status changed.

Commits are not ordered by ``updated_at`` (a transaction may commit after a later one), so each
poll looks back a few seconds and skips what it has already sent, by (id, updated_at)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from events.models import Event
from events.payloads import event_payload
from streams.models import Camera
from streams.serializers import CameraStatusSerializer

logger = logging.getLogger(__name__)

LOOK_BACK = timedelta(seconds=5)  # longer than any event transaction stays open
CAMERA_POLL_SECONDS = 1.0
MAX_EVENTS_PER_POLL = 500


@dataclass(frozen=True)
class FeedFilter:
    camera_id: int | None = None
    gallery_id: int | None = None
    kind: str | None = None  # "known", "unknown" or None: both

    def wants_event(self, event: Event) -> bool:
        return ((self.camera_id is None or event.camera_id == self.camera_id)
                and (self.gallery_id is None or event.gallery_id == self.gallery_id)
                and (self.kind is None or event.kind == self.kind))

    def wants_camera(self, camera: Camera) -> bool:
        return ((self.camera_id is None or camera.pk == self.camera_id)
                and (self.gallery_id is None or camera.gallery_id == self.gallery_id))


@dataclass(eq=False)
class Subscriber:
    """One connection: its filter, and how a message reaches it (called on its event loop)."""

    filter: FeedFilter
    loop: asyncio.AbstractEventLoop
    deliver: Callable[[str], None]
    active: bool = field(default=True)

    def offer(self, text: str) -> None:
        if self.active:
            try:
                self.loop.call_soon_threadsafe(self.deliver, text)
            except RuntimeError:  # its loop is closed: the server is stopping
                self.active = False


def camera_message(camera: Camera) -> dict:
    return {"type": "camera", "id": camera.pk, "name": camera.name, "gallery": camera.gallery_id,
            "enabled": camera.enabled, **CameraStatusSerializer(camera).data}


def event_phase(event: Event, *, new: bool) -> str:
    """The phase as the feed sees it: it may see an appearance for the first time already closed."""
    if event.closed_at is not None:
        return "closed"
    return "opened" if new else "updated"


def recent_events(feed_filter: FeedFilter, limit: int) -> list[dict]:
    """The newest ``limit`` events matching, oldest first: what a dashboard shows on connecting."""
    if limit <= 0:
        return []
    query = Event.objects.select_related("person", "gallery").order_by("-first_seen", "-id")
    if feed_filter.camera_id is not None:
        query = query.filter(camera_id=feed_filter.camera_id)
    if feed_filter.gallery_id is not None:
        query = query.filter(gallery_id=feed_filter.gallery_id)
    if feed_filter.kind is not None:
        query = query.filter(kind=feed_filter.kind)
    return [event_payload(e, event_phase(e, new=True)) for e in reversed(list(query[:limit]))]


def camera_states(feed_filter: FeedFilter) -> list[dict]:
    return [camera_message(c) for c in Camera.objects.order_by("name") if feed_filter.wants_camera(c)]


class FeedHub:
    """The process's poller; subscribers come and go, the thread runs while there are any."""

    def __init__(self, poll_seconds: float | None = None) -> None:
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._sent: dict[tuple[int, datetime], float] = {}  # (id, updated_at) → when sent
        self._known: dict[int, float] = {}  # event ids already announced → when last seen
        self._cameras: dict[int, str] = {}  # camera id → its last status message
        self._cursor: datetime | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="events-feed", daemon=True)
                self._thread.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.active = False
        with self._lock:
            self._subscribers.discard(subscriber)

    def _listeners(self) -> list[Subscriber]:
        with self._lock:
            return list(self._subscribers)

    def _run(self) -> None:
        from streams.sink import reset_connection

        self._cursor, self._cameras = timezone.now(), {}
        next_cameras = 0.0
        try:
            while True:
                with self._lock:
                    if not self._subscribers:
                        self._thread = None
                        return
                try:
                    self.poll_events()
                    if time.monotonic() >= next_cameras:
                        next_cameras = time.monotonic() + CAMERA_POLL_SECONDS
                        self.poll_cameras()
                except DatabaseError:
                    logger.warning("live feed: the database is unavailable; retrying", exc_info=True)
                    reset_connection()
                except Exception:  # noqa: BLE001 - the feed must outlive one bad poll
                    logger.exception("live feed: poll failed")
                time.sleep(self.poll_seconds or settings.FEED_POLL_SECONDS)
        finally:
            reset_connection()

    def poll_events(self) -> None:
        assert self._cursor is not None
        since = self._cursor - LOOK_BACK
        rows = list(Event.objects.select_related("person", "gallery").filter(updated_at__gte=since)
                    .order_by("updated_at", "id")[:MAX_EVENTS_PER_POLL])
        now = time.monotonic()
        listeners = self._listeners()
        for event in rows:
            key = (event.pk, event.updated_at)
            if key in self._sent:
                continue
            self._sent[key] = now
            new = event.pk not in self._known and event.created_at >= since
            self._known[event.pk] = now
            text = json.dumps(event_payload(event, event_phase(event, new=new)), allow_nan=False)
            for subscriber in listeners:
                if subscriber.filter.wants_event(event):
                    subscriber.offer(text)
        if rows:
            # A full page moves the cursor to its last row only: the rest comes with the next poll.
            self._cursor = max(self._cursor, rows[-1].updated_at)
        horizon = now - 2 * LOOK_BACK.total_seconds() - 60.0
        self._sent = {k: t for k, t in self._sent.items() if t > horizon}
        self._known = {k: t for k, t in self._known.items() if t > horizon}

    def poll_cameras(self) -> None:
        listeners = self._listeners()
        seen = set()
        for camera in Camera.objects.order_by("name"):
            seen.add(camera.pk)
            text = json.dumps(camera_message(camera), allow_nan=False)
            if self._cameras.get(camera.pk) == text:
                continue
            self._cameras[camera.pk] = text
            for subscriber in listeners:
                if subscriber.filter.wants_camera(camera):
                    subscriber.offer(text)
        for pk in set(self._cameras) - seen:  # deleted
            del self._cameras[pk]
            text = json.dumps({"type": "camera_removed", "id": pk})
            for subscriber in listeners:
                if subscriber.filter.camera_id in (None, pk):
                    subscriber.offer(text)


hub = FeedHub()
