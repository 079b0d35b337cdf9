"""ASGI entry point: plain HTTP (Django) and WebSockets (Channels) on one server.

`make run` serves it with uvicorn, `make serve` with gunicorn's uvicorn workers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# Django is set up before the consumers are imported (they import models).
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from streams.routing import websocket_urlpatterns  # noqa: E402
from streams.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)),
})
