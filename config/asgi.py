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
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse
from django.urls import Resolver404, resolve, set_urlconf
from django.utils.log import log_response

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django.setup(set_prefix=False)
logger = logging.getLogger("core.request")


class _OverloadedIsAWarning(logging.Filter):
    """The request log writes every 5xx at error level; a 503 overloaded is the queue's bound doing
    its job (the client is told when to come back), so its line is a warning, as the refusals made
    before any view runs are."""

    def filter(self, record: logging.LogRecord) -> bool:
        from core.serving.state import request_refusal

        if record.levelno == logging.ERROR and getattr(record, "status", None) == 503 and request_refusal.get():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logger.addFilter(_OverloadedIsAWarning())


class TwoLanes(ASGIHandler):
    """Each request's view runs on one of two bounded pools of threads (core/serving/lanes.py):
    the engine lane for views that run the face engine on the request path (their class says
    ``engine_bound``), the light lane for everything else, so a quick request (create a person,
    a token, the health check) never waits behind recognitions. The engine lane's views hand their
    images to the process's batcher (people/engine.py), which gathers the images of concurrent
    requests into one engine call and refuses at once (503 overloaded, Retry-After) a request that
    would wait too long; a request that would wait for an engine thread past that is refused here.

    Django's own ASGI handler runs the synchronous views on a thread per request, each holding a
    pooled database connection: under load the pool (DB_POOL_MAX) ran dry. Here a thread runs the
    synchronous middleware chain itself, as a WSGI server's thread does, and gives its connections
    back after each request (and an engine view gives them back while it waits for the engine):
    a process holds at most one connection per busy thread (docs/operations.md sizes them).
    Uploads are still read, and answers still sent, on the event loop, without holding a thread;
    the live WebSockets analyse frames on their own pool (streams.browser)."""

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)  # the chain the lanes' threads run, as under WSGI
        self._lanes = None
        self._lanes_pid = None

    async def __call__(self, scope, receive, send):
        # Django's wraps this in a ThreadSensitiveContext (a thread per request); its signals'
        # receivers and the closing of answers run on asgiref's one shared thread instead.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    def lanes(self):
        """Created in each process on its first request: threads do not survive gunicorn's fork."""
        if self._lanes is None or self._lanes_pid != os.getpid():
            from core.serving import Lanes
            from people.engine import request_batcher

            self._lanes = Lanes(light_threads=settings.SERVING_LIGHT_THREADS,
                                engine_threads=settings.SERVING_ENGINE_THREADS,
                                engine_nice=settings.SERVING_ENGINE_NICE, queue=request_batcher)
            self._lanes_pid = os.getpid()
        return self._lanes

    async def run_get_response(self, request):
        lanes = self.lanes()
        if _engine_bound(request):
            refusal = lanes.engine_admission()
            if refusal is not None:
                return _overloaded(request, refusal)
            lane = lanes.engine
        else:
            lane = lanes.light
        response = await lane.run(self._respond, request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):  # as Django's: the server chunks the file itself
            response.block_size = self.chunk_size
        return response

    def _respond(self, request):
        """On a lane's thread: the view and every middleware, the thread's database connections
        given back before and after (what request_started and request_finished do under WSGI)."""
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            close_old_connections()

    def get_response(self, request):
        """BaseHandler's, but a 503 overloaded gets its Retry-After, and is not logged by
        django.request as an error (an expected refusal; the request log has its line)."""
        from core.serving import with_retry_after
        from core.serving.state import request_refusal

        set_urlconf(settings.ROOT_URLCONF)
        response = with_retry_after(self._middleware_chain(request))
        response._resource_closers.append(request.close)
        if response.status_code >= 400 and not (response.status_code == 503 and request_refusal.get()):
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

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


def _engine_bound(request) -> bool:
    """Whether the request's view runs the engine on the request path: its class's
    ``engine_bound``, True or the methods that do (a view that lists on GET and enrols on POST)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    view = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    bound = getattr(view, "engine_bound", False)
    return bound is True or (bool(bound) and request.method in bound)


def _overloaded(request, refusal):
    """The 503 of a request refused before its view ran (the engine's queue would make it wait too
    long, or is full): logged at warning level with its request id, as the request log would."""
    import uuid

    from core.errors import error_response
    from core.middleware import REQUEST_ID_HEADER, incoming_request_id

    request_id = incoming_request_id(request) or uuid.uuid4().hex
    logger.warning("%s %s 503 overloaded (%s)", request.method, request.path, refusal.reason,
                   extra={"request_id": request_id, "method": request.method, "path": request.path, "status": 503,
                          "reason": refusal.reason, "estimated_wait_ms": refusal.details["estimated_wait_ms"]})
    response = error_response(503, "overloaded", refusal.message, refusal.details)
    response["Retry-After"] = str(refusal.retry_after)
    response[REQUEST_ID_HEADER] = request_id
    return response


django_application = TwoLanes()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (Django is set up first)

from events.routing import websocket_urlpatterns as event_routes  # noqa: E402
from streams.routing import websocket_urlpatterns as stream_routes  # noqa: E402
from streams.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": TokenOrSessionAuthMiddleware(URLRouter(stream_routes + event_routes)),
})
