"""The live feed, ``ws/events/``: recognition events and camera states as they happen, for
dashboards. Read only: the client sends nothing but pings.

    ws://host/ws/events/?token=<key>&camera=<id or name>&gallery=<id or slug>&kind=known&backlog=20

On connecting the client gets ``{"type": "hello", ...}`` with the filters, the cameras' states and
the newest ``backlog`` events (20 by default, at most 200), then one message per event change
(``"type": "event"``, the shape of events.payloads) and per camera state change (``"type":
"camera"``). Messages wait in a bounded queue per connection; a client that does not keep up is
closed with 4408 (streams.ws_base)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from core.errors import ServiceError
from events.feed import FeedFilter, Subscriber, camera_states, hub, recent_events
from streams.ws_base import CLOSE_AUTH, CLOSE_PARAMS, CLOSE_SLOW_READER, BoundedConsumer, json_object

logger = logging.getLogger(__name__)

DEFAULT_BACKLOG, MAX_BACKLOG = 20, 200
QUEUE_MESSAGES = 1000  # messages waiting for one client before it counts as not reading
MAX_TEXT_CHARS = 4096
KINDS = ("known", "unknown")


class FeedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1].strip() if values else None


@database_sync_to_async
def _resolve(query: dict[str, list[str]]) -> tuple[FeedFilter, dict]:
    """The connection's filters from its query string, or FeedError naming the bad parameter."""
    from people.selectors import gallery_resolve
    from streams.selectors import camera_by_ref

    camera = gallery = None
    if text := _one(query, "camera"):
        camera = camera_by_ref(text)
        if camera is None:
            raise FeedError("not_found", f"camera: no camera with id or name {text!r}.")
    if text := _one(query, "gallery"):
        try:
            gallery = gallery_resolve(text)
        except ServiceError as exc:
            raise FeedError(exc.error_code, f"gallery: {exc.message}") from None
    kind = _one(query, "kind") or None
    if kind is not None and kind not in KINDS:
        raise FeedError("invalid", "kind must be known or unknown.")
    backlog_text = _one(query, "backlog")
    backlog = DEFAULT_BACKLOG
    if backlog_text is not None:
        # the length first: int() refuses strings past 4,300 digits with its own error
        if (not (backlog_text.isascii() and backlog_text.isdigit()) or len(backlog_text) > 4
                or int(backlog_text) > MAX_BACKLOG):
            raise FeedError("invalid", f"backlog must be an integer from 0 to {MAX_BACKLOG}.")
        backlog = int(backlog_text)
    feed_filter = FeedFilter(camera_id=camera.pk if camera else None, gallery_id=gallery.pk if gallery else None,
                             kind=kind)
    hello = {
        "type": "hello",
        "filters": {"camera": camera.pk if camera else None, "camera_name": camera.name if camera else None,
                    "gallery": gallery.pk if gallery else None, "gallery_slug": gallery.slug if gallery else None,
                    "kind": kind},
        "cameras": camera_states(feed_filter),
        "events": recent_events(feed_filter, backlog),
    }
    return feed_filter, hello


class FeedConsumer(BoundedConsumer):
    name = "live feed"

    def setup(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_MESSAGES)
        self.subscriber: Subscriber | None = None

    async def _receive(self, message: dict) -> None:
        await self._control(message.get("text") or "")

    async def _connect(self) -> None:
        await self.base_send({"type": "websocket.accept"})
        refusal = self.authenticated()
        if refusal is not None:
            return await self._refuse(*refusal, CLOSE_AUTH)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            feed_filter, hello = await _resolve(query)
        except FeedError as exc:
            return await self._refuse(exc.code, exc.message, CLOSE_PARAMS)
        # Subscribed before the hello is sent: nothing recorded meanwhile is missed (a duplicate
        # is possible, and harmless: a dashboard keys events by id).
        self.subscriber = Subscriber(feed_filter, asyncio.get_running_loop(), self._offer)
        hub.subscribe(self.subscriber)
        self.ready = True
        if await self._send_json(hello):
            self.worker = asyncio.ensure_future(self._pump())
            logger.info("live feed of %s: open (%s)", self._who(), feed_filter)

    def _offer(self, text: str) -> None:
        """On the event loop, from the hub's thread."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            logger.warning("live feed of %s: %d messages waiting: closing (4408)", self._who(), QUEUE_MESSAGES)
            self._shut(CLOSE_SLOW_READER)

    async def _pump(self) -> None:
        while True:
            text = await self.queue.get()
            if not await self._send_text(text):
                return

    async def _control(self, text: str) -> None:
        message = json_object(text, MAX_TEXT_CHARS)
        if message is not None and message.get("type") == "ping":
            await self._send_json({"type": "pong"})
        else:
            await self._send_error("invalid_message", 'The feed is read only: the only message it takes is '
                                   '{"type": "ping"}.')

    async def cleanup(self) -> None:
        if self.subscriber is not None:
            hub.unsubscribe(self.subscriber)
