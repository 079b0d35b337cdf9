"""WebSocket routes of the events app (served by config.asgi)."""

from django.urls import path

from events.consumers import FeedConsumer

websocket_urlpatterns: list = [
    path("ws/events/", FeedConsumer.as_asgi()),
]
