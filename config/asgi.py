"""ASGI entry point: plain HTTP (Django) and WebSockets (Channels) on one server.

`make run` serves it with uvicorn, `make serve` with gunicorn's uvicorn workers."""

import asyncio
import json
import logging
import os
import tempfile

import django
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django.setup(set_prefix=False)
logger = logging.getLogger("core.request")


class OneViewAtATime(ASGIHandler):
    """Django's ASGI handler runs each request's synchronous code (every view here) on a thread of
    its own, so a process under load runs dozens of recognitions at once, each holding a pooled
    database connection: the pool (DB_POOL_MAX) ran dry and requests failed with 503 in the load
    test. Without that per-request context they share one thread per process, one view at a time,
    as gunicorn's sync workers ran them; uploads are still read, and answers still sent, without
    holding it, and the live WebSockets analyse frames on their own pool (streams.browser)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    # The body is read here, on the event loop, before any view runs: bounded in size (413, at once
    # when Content-Length announces too much, else as soon as it is passed) and in time (408: a
    # client trickling it byte by byte would otherwise hold the connection and its buffer forever).
    # Both answers close the connection: the rest of the body is never read.

    async def handle(self, scope, receive, send):
        refusal = _head_refusal(scope)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        try:
            await super().handle(scope, receive, send)
        except BodyRefused as refusal:
            await _refuse(send, refusal)

    async def read_body(self, receive):
        limit, deadline = settings.REQUEST_MAX_BODY_BYTES, settings.REQUEST_BODY_TIMEOUT
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        size = 0
        try:
            async with asyncio.timeout(deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise RequestAborted()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _too_large()
                    body_file.write(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            body_file.close()
            raise BodyRefused(408, "request_timeout", f"The request body did not arrive within {deadline:g} seconds "
                                                      "(REQUEST_BODY_TIMEOUT).") from None
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file


class BodyRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _too_large() -> BodyRefused:
    return BodyRefused(413, "request_too_large",
                       f"The request body is over {settings.REQUEST_MAX_BODY_BYTES} bytes (REQUEST_MAX_BODY_BYTES).")


def _head_refusal(scope) -> BodyRefused | None:
    """What the request line and headers alone refuse: too long, too many, or a Content-Length over
    REQUEST_MAX_BODY_BYTES (answered at once, the body never read)."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 11
    if line > settings.REQUEST_MAX_LINE_BYTES:
        return BodyRefused(414, "uri_too_long", f"The request line is over {settings.REQUEST_MAX_LINE_BYTES} bytes "
                                                "(REQUEST_MAX_LINE_BYTES).")
    headers = scope.get("headers", ())
    if len(headers) > settings.REQUEST_MAX_HEADERS:
        return BodyRefused(431, "headers_too_large", f"More than {settings.REQUEST_MAX_HEADERS} headers "
                                                     "(REQUEST_MAX_HEADERS).")
    if any(len(name) + len(value) + 2 > settings.REQUEST_MAX_HEADER_BYTES for name, value in headers):
        return BodyRefused(431, "headers_too_large", f"A header is over {settings.REQUEST_MAX_HEADER_BYTES} bytes "
                                                     "(REQUEST_MAX_HEADER_BYTES).")
    for name, value in headers:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            if text.isascii() and text.isdigit() and int(text[:30]) > settings.REQUEST_MAX_BODY_BYTES:
                return _too_large()
    return None


async def _refuse(send, refusal: BodyRefused) -> None:
    """The error answer, sent straight to the server (no view ran, so no middleware logs it)."""
    from core.errors import error_body

    logger.warning("%s %s: %s", refusal.status, refusal.code, refusal.message)
    body = json.dumps(error_body(refusal.code, refusal.message)).encode()
    await send({"type": "http.response.start", "status": refusal.status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})


django_application = OneViewAtATime()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (Django is set up first)

from events.routing import websocket_urlpatterns as event_routes  # noqa: E402
from streams.routing import websocket_urlpatterns as stream_routes  # noqa: E402
from streams.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": TokenOrSessionAuthMiddleware(URLRouter(stream_routes + event_routes)),
})
