"""WebSocket routes (served by config.asgi)."""

from django.urls import path

websocket_urlpatterns: list = []
