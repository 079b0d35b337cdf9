"""The browser's live stream, ``ws/live/``: JPEG frames in, tracked and named faces out.

Each connection keeps a small queue of frames (``LIVE_QUEUE_FRAMES``; when it is full the oldest
frame is replaced, so a client that sends faster than the server analyses gets fresh results
instead of growing lag) and one task that analyses them one at a time on the process-wide pool
(streams.browser), never on the event loop. Its faces go through an AppearanceTracker of its own,
so a browser stream records events exactly as a camera does (source "browser").

Sends have a deadline, and a client that stops reading is closed with 4408 (streams.ws_base).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import close_old_connections

from core.errors import ServiceError
from core.ids import MAX_ID
from face_engine.types import ImageError
from people.engine import pipeline
from streams import browser
from streams.browser import BrowserStream
from streams.matching import person_names
from streams.ws_base import CLOSE_AUTH, CLOSE_PARAMS, BoundedConsumer, json_object

logger = logging.getLogger(__name__)

MIN_FACE_SIZE, MAX_FACE_SIZE = 20, 2000
TICK_SECONDS = 1.0  # appearances end on time even when the client stops sending
MAX_TEXT_CHARS = 64 * 1024  # control messages are tiny; a huge one is not worth parsing


@dataclass(frozen=True)
class _Frame:
    number: int  # the n-th binary message of the connection (the client counts its sends alike)
    data: bytes
    received_at: float  # time.time(): when the face was seen, for the tracker and the events
    received_mono: float


def _face_size(value) -> int | None:
    """A min_face_size within bounds (an int or its digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        digits = text.lstrip("0") or "0"
        if not (text.isascii() and text.isdigit()) or len(digits) > 4:  # not "²", nor 5,000 nines
            return None
        value = int(digits)
    return value if isinstance(value, int) and MIN_FACE_SIZE <= value <= MAX_FACE_SIZE else None


@database_sync_to_async
def _gallery_id(value) -> int | None:
    from people.selectors import gallery_resolve

    gallery = gallery_resolve(value)
    return None if gallery is None else gallery.pk


@database_sync_to_async
def _enrol(*, person_id: int, data: bytes, actor) -> dict:
    from people.models import Person
    from people.services import face_enroll

    person = Person.objects.filter(pk=person_id).first()
    if person is None:
        raise ServiceError("not_found", f"No person with id {person_id}.", status_code=404)
    outcome = face_enroll(person=person, uploads=[ContentFile(data, name="live.jpg")], largest=True, actor=actor)[0]
    if outcome.error is not None:
        raise outcome.error
    assert outcome.face is not None
    return {"type": "enrolled", "person_id": person.pk, "person_name": person.name, "face_id": outcome.face.pk}


class LiveConsumer(BoundedConsumer):
    name = "live stream"

    def setup(self) -> None:
        self.max_frame_bytes = int(settings.LIVE_MAX_FRAME_BYTES)
        self.queue: deque[_Frame] = deque()
        self.queue_size = max(1, int(settings.LIVE_QUEUE_FRAMES))
        self.received = self.processed = self.dropped = 0
        self.stream: BrowserStream | None = None
        self.min_face_size = min(max(settings.FACE_ENGINE.min_face_size, MIN_FACE_SIZE), MAX_FACE_SIZE)
        self.names: dict[int, str] = {}
        self.last_frame: bytes | None = None  # the last analysed frame's bytes: what "enrol" enrols
        self.wakeup = asyncio.Event()

    async def _receive(self, message: dict) -> None:
        if message.get("bytes") is not None:
            await self._frame(message["bytes"])
        else:
            await self._control(message.get("text") or "")

    # ---- connecting ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        await self.base_send({"type": "websocket.accept"})
        user = self.user
        refusal = self.authenticated()
        if refusal is not None:
            return await self._refuse(*refusal, CLOSE_AUTH)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if "min_face_size" in query:
            size = _face_size(query["min_face_size"][0])
            if size is None:
                return await self._refuse(
                    "invalid", f"min_face_size must be an integer from {MIN_FACE_SIZE} to {MAX_FACE_SIZE}.",
                    CLOSE_PARAMS)
            self.min_face_size = size
        try:
            gallery_id = await _gallery_id(query.get("gallery", [None])[0])
        except ServiceError as exc:
            return await self._refuse(exc.error_code, exc.message, CLOSE_PARAMS)
        self.stream = BrowserStream(gallery_id=gallery_id, user=user)
        self.ready = True
        self.worker = asyncio.ensure_future(self._work())
        logger.info("live stream of %s: open (gallery %s)", self._who(), gallery_id)
        await self._send_json({"type": "ready", "user": user.get_username(), "staff": bool(user.is_staff),
                               "gallery": gallery_id, "max_frame_bytes": self.max_frame_bytes,
                               "min_face_size": self.min_face_size})

    # ---- client messages -------------------------------------------------------------------------

    async def _frame(self, data: bytes) -> None:
        self.received += 1
        if len(data) > self.max_frame_bytes:
            await self._send_error("frame_too_large", f"The frame is {len(data)} bytes; the limit is "
                                   f"{self.max_frame_bytes} bytes.", frame=self.received)
            return
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()  # the oldest waiting frame gives way: the newest is what the client shows
            self.dropped += 1
        self.queue.append(_Frame(self.received, data, time.time(), time.monotonic()))
        self.wakeup.set()

    async def _control(self, text: str) -> None:
        message = json_object(text, MAX_TEXT_CHARS)
        if message is None:
            return await self._invalid("A text message must be a JSON object with a \"type\".")
        kind = message.get("type")
        if kind == "ping":
            await self._send_json({"type": "pong"})
        elif kind == "config":
            await self._config(message)
        elif kind == "enrol":
            await self._enrol(message)
        else:
            await self._invalid("The type must be \"ping\", \"config\" or \"enrol\".")

    async def _invalid(self, message: str) -> None:
        await self._send_error("invalid_message", message)

    async def _config(self, message: dict) -> None:
        size = _face_size(message.get("min_face_size", self.min_face_size))
        if size is None:
            return await self._invalid(f"min_face_size must be an integer from {MIN_FACE_SIZE} to {MAX_FACE_SIZE}.")
        assert self.stream is not None
        gallery_id = self.stream.gallery_id
        if "gallery" in message:
            value = message["gallery"]
            if isinstance(value, bool) or not (value is None or isinstance(value, int | str)):
                return await self._invalid("gallery must be a gallery's id, its slug, or null.")
            try:
                gallery_id = await _gallery_id(value)
            except ServiceError as exc:
                return await self._send_error(exc.error_code, exc.message)
        self.min_face_size = size
        if gallery_id != self.stream.gallery_id:  # other people to match: the appearances so far end
            old, self.stream = self.stream, BrowserStream(gallery_id=gallery_id, user=self.user)
            await browser.run_blocking(old.close)
        await self._send_json({"type": "config", "gallery": gallery_id, "min_face_size": size})

    async def _enrol(self, message: dict) -> None:
        if not self.user.is_staff:
            return await self._send_error("permission_denied", "Only staff may enrol faces.")
        person_id = message.get("person_id")
        if isinstance(person_id, bool) or not isinstance(person_id, int) or not 1 <= person_id <= MAX_ID:
            return await self._invalid("person_id must be a person's id.")
        if self.last_frame is None:
            return await self._send_error("no_face", "No frame has been analysed yet: nothing to enrol.")
        try:
            reply = await _enrol(person_id=person_id, data=self.last_frame, actor=self.user)
        except ServiceError as exc:
            return await self._send_error(exc.error_code, exc.message)
        logger.info("live stream of %s: face %s enrolled for person %s", self._who(), reply["face_id"], person_id)
        await self._send_json(reply)

    # ---- analysis --------------------------------------------------------------------------------

    async def _work(self) -> None:
        """The connection's one analysing task: the waiting frames in order, a tick when idle."""
        while True:
            try:
                await self._step()
            except Exception:  # noqa: BLE001 - whatever failed, the stream goes on (cancelling still ends it)
                logger.exception("live stream of %s: analysis step failed", self._who())

    async def _step(self) -> None:
        assert self.stream is not None  # the task starts once the stream exists
        if not self.queue:
            self.wakeup.clear()
            try:
                async with asyncio.timeout(TICK_SECONDS):
                    await self.wakeup.wait()
            except TimeoutError:
                return await browser.run_blocking(self.stream.tick)
        frame = self.queue.popleft()
        try:
            payload = await browser.run_blocking(self._analyse, self.stream, frame, self.min_face_size)
        except ImageError as exc:
            return await self._send_error(exc.code, exc.message, frame=frame.number)
        except Exception:  # noqa: BLE001 - one bad frame, not the end of the stream
            logger.exception("live stream of %s: frame %d failed", self._who(), frame.number)
            return await self._send_error("internal_error", "This frame could not be analysed.", frame=frame.number)
        self.processed += 1
        await self._send_json({**payload, "dropped": self.dropped, "received": self.received})

    def _analyse(self, stream: BrowserStream, frame: _Frame, min_face_size: int) -> dict:
        """On the pool: decode, detect, embed, track, name (blocking)."""
        try:
            started = time.monotonic()
            engine = pipeline()
            clock = time.perf_counter()
            image = engine.decode(frame.data)
            decode_ms = (time.perf_counter() - clock) * 1000.0
            result = engine.analyze([image], min_face_size=min_face_size, cnn_fallback=False)[0]
            clock = time.perf_counter()
            tracked = stream.observe(result.faces, image, at=frame.received_at)
            names = self._names({t.person_id for t in tracked if t.decided and t.person_id is not None})
            match_ms = (time.perf_counter() - clock) * 1000.0
            self.last_frame = frame.data
        finally:
            close_old_connections()  # as after a request: a pooled connection goes back, a broken one is dropped
        faces = [{
            "track_id": t.track_id, "box": t.box.as_dict(),
            "name": None if not t.decided else "unknown" if t.person_id is None else names.get(t.person_id, ""),
            "person_id": t.person_id if t.decided else None, "decided": t.decided,
            "distance": None if t.distance is None else round(float(t.distance), 4),
        } for t in tracked]
        stages = result.timings_ms
        timings = {"queue": (started - frame.received_mono) * 1000.0, "decode": decode_ms,
                   **{k: stages.get(k, 0.0) for k in ("detect", "landmarks", "embed")}, "match": match_ms,
                   "total": (time.monotonic() - frame.received_mono) * 1000.0}
        return {"type": "result", "frame": frame.number, "width": result.width, "height": result.height,
                "faces": faces, "timings_ms": {k: round(v, 1) for k, v in timings.items()}}

    def _names(self, person_ids: set[int]) -> dict[int, str]:
        missing = person_ids - self.names.keys()
        if missing:  # a name is looked up once per connection: a frame should not wait on the database
            self.names.update(person_names(missing))
        return {pid: self.names[pid] for pid in person_ids if pid in self.names}

    # ---- closing --------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """The connection is over: close the appearances (their events), never raise."""
        if self.stream is not None:
            # Submitted, not only awaited: it must run even when this task is being cancelled.
            done = browser.inference_pool().submit(self.stream.close)
            try:
                await asyncio.shield(asyncio.wrap_future(done))
            except asyncio.CancelledError:
                pass  # the server is stopping: the close still runs on the pool
            except Exception:  # noqa: BLE001
                logger.exception("live stream of %s: closing its appearances failed", self._who())
        if self.ready:
            logger.info("live stream of %s: closed (%d frames received, %d analysed, %d dropped)", self._who(),
                        self.received, self.processed, self.dropped)
