"""ASGI entry point: plain HTTP (Django) and WebSockets (Channels) on one server.

`make run` serves it with uvicorn, `make serve` with gunicorn's uvicorn workers."""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django.setup(set_prefix=False)


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


django_application = OneViewAtATime()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (Django is set up first)

from events.routing import websocket_urlpatterns as event_routes  # noqa: E402
from streams.routing import websocket_urlpatterns as stream_routes  # noqa: E402
from streams.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": TokenOrSessionAuthMiddleware(URLRouter(stream_routes + event_routes)),
})
