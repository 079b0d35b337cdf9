"""The channel layer (what carries messages between ASGI processes, for the live feeds to come):
Redis when REDIS_URL is set, in memory otherwise; a message sent to a group arrives."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from config.settings import base


def round_trip(layer) -> dict:
    async def go():
        channel = await layer.new_channel()
        await layer.group_add("cameras", channel)
        await layer.group_send("cameras", {"type": "camera.status", "camera": 7})
        message = await layer.receive(channel)
        await layer.group_discard("cameras", channel)
        return message

    return async_to_sync(go)()


def test_without_redis_the_layer_is_in_memory(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    assert type(layer).__name__ == "InMemoryChannelLayer"
    assert round_trip(layer) == {"type": "camera.status", "camera": 7}


@pytest.mark.services
def test_with_redis_url_the_layer_is_redis(settings, monkeypatch):
    assert base.CHANNEL_LAYERS["default"]["BACKEND"] == (
        "channels_redis.core.RedisChannelLayer" if base.REDIS_URL else "channels.layers.InMemoryChannelLayer")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:6379/12"]}}}
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    assert round_trip(layer) == {"type": "camera.status", "camera": 7}
