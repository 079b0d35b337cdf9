"""The live feed, ws/events/: authentication, filters, the hello (cameras and recent events), events
and camera states as they are written (by this process here; the feed reads the database, so a
camera worker's are the same), pings, bad messages. In-process (config.asgi), real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from events.feed import hub
from people.models import Gallery
from people.services import person_create
from streams.models import Camera
from tests.test_events_api import upsert
from tests.test_live_ws import ORIGIN, token_for
from tests.ws_client import Communicator

pytestmark = [pytest.mark.django_db(transaction=True)]  # the feed's thread reads what the test committed


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.FEED_POLL_SECONDS = 0.05


@pytest.fixture(autouse=True)
def feed_stopped(transactional_db):
    """The feed's poller thread ends with its test: a connection a test left open is dropped and
    the thread joined, so it never polls into the next test's database (or past the last one's)."""
    yield
    with hub._lock:
        for subscriber in hub._subscribers:
            subscriber.active = False
        hub._subscribers.clear()
    thread = hub._thread
    if thread is not None:
        thread.join(5)
        assert not thread.is_alive(), "the feed's poller stopped"


@pytest.fixture
def scene(db):
    door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    hall = Camera.objects.create(name="hall", source_url="rtsp://cam/2")
    staff = Gallery.objects.create(name="Staff", slug="staff")
    door.gallery = staff
    door.save()
    ann = person_create(name="Ann")
    return {"door": door, "hall": hall, "staff": staff, "ann": ann}


async def feed(key: str, query: str = "", *, expect_hello: bool = True):
    from config.asgi import application

    communicator = Communicator(application, f"/ws/events/?token={key}" + (f"&{query}" if query else ""))
    assert await communicator.connect(timeout=10)
    hello = await communicator.receive_json_from(timeout=10) if expect_hello else None
    return communicator, hello


async def until(communicator, predicate, *, timeout: float = 10.0) -> dict:
    """The first message for which ``predicate`` holds (camera updates may come in between)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            if predicate(message):
                return message


async def closed_with(communicator) -> int:
    message = await communicator.receive_output(10)
    assert message["type"] == "websocket.close", message
    return message["code"]


def run(body):
    from asgiref.sync import async_to_sync

    return async_to_sync(body)()


def now_values(**changes) -> dict:
    start = timezone.now()
    return {"first_seen": start, "named_at": start + timedelta(milliseconds=200), "last_seen": start, **changes}


def test_a_connection_needs_a_user(db):
    from config.asgi import application

    async def body():
        for path in ("/ws/events/", "/ws/events/?token=nope"):
            communicator = Communicator(application, path, headers=ORIGIN)
            assert await communicator.connect()
            error = await communicator.receive_json_from(10)
            assert error["type"] == "error" and error["code"] in ("not_authenticated", "authentication_failed")
            assert await closed_with(communicator) == 4401

    run(body)


@pytest.mark.parametrize(("query", "code", "text"), [
    ("camera=nowhere", "not_found", "camera"),
    ("gallery=nowhere", "unknown_gallery", "gallery"),
    ("kind=maybe", "invalid", "kind"),
    ("backlog=-1", "invalid", "backlog"),
    ("backlog=²", "invalid", "backlog"),
    ("backlog=201", "invalid", "backlog"),
    ("backlog=" + "9" * 5000, "invalid", "backlog"),  # past int()'s 4,300-digit limit
])
def test_bad_filters_are_refused_with_a_message(user, query, code, text):
    key = token_for(user)

    async def body():
        communicator, _ = await feed(key, query, expect_hello=False)
        error = await communicator.receive_json_from(10)
        assert error["type"] == "error" and error["code"] == code and text in error["message"], error
        assert await closed_with(communicator) == 4400

    run(body)


def test_hello_carries_the_cameras_and_the_recent_events_filtered(user, scene):
    door, hall, ann = scene["door"], scene["hall"], scene["ann"]
    old = upsert(camera_id=door.pk, gallery_id=scene["staff"].pk, person_id=ann.pk)
    upsert(camera_id=hall.pk, source_name="hall")

    key = token_for(user)

    async def body():
        _, hello = await feed(key)
        assert {c["name"] for c in hello["cameras"]} == {"door", "hall"}
        assert len(hello["events"]) == 2
        _, hello = await feed(key, f"camera={door.pk}&backlog=5")
        assert [c["name"] for c in hello["cameras"]] == ["door"]
        assert [e["id"] for e in hello["events"]] == [old.pk]
        first = hello["events"][0]
        assert first["person_name"] == "Ann" and first["camera_name"] == "door" and first["gallery_slug"] == "staff"
        assert first["crop_url"] == f"/api/events/{old.pk}/crop/"
        _, hello = await feed(key, "gallery=staff&kind=unknown")
        assert hello["events"] == [] and [c["name"] for c in hello["cameras"]] == ["door"]
        _, hello = await feed(key, "backlog=0")
        assert hello["events"] == []

    run(body)


def test_events_arrive_as_they_are_written_with_their_phase(user, scene):
    door, hall, ann = scene["door"], scene["hall"], scene["ann"]
    uid = uuid.uuid4()

    key = token_for(user)

    async def body():
        everyone, _ = await feed(key, "backlog=0")
        door_only, _ = await feed(key, "camera=door&backlog=0")
        unknown_only, _ = await feed(key, "kind=unknown&backlog=0")
        write = database_sync_to_async(upsert)
        opened = await write(uid=uid, camera_id=door.pk, person_id=ann.pk, **now_values())
        message = await until(everyone, lambda m: m["type"] == "event")
        assert (message["id"], message["phase"], message["person_name"]) == (opened.pk, "opened", "Ann")
        assert message["closed_at"] is None
        assert (await until(door_only, lambda m: m["type"] == "event"))["id"] == opened.pk
        await write(uid=uid, camera_id=door.pk, person_id=ann.pk, **now_values(closed_at=timezone.now()))
        closed = await until(everyone, lambda m: m["type"] == "event")
        assert (closed["id"], closed["phase"]) == (opened.pk, "closed") and closed["closed_at"] is not None
        stranger = await write(camera_id=hall.pk, source_name="hall", **now_values())
        message = await until(everyone, lambda m: m["type"] == "event")
        assert (message["id"], message["kind"], message["person"]) == (stranger.pk, "unknown", None)
        assert (await until(unknown_only, lambda m: m["type"] == "event"))["id"] == stranger.pk
        # The door's feed had the closing of Ann's appearance, never the hall's stranger.
        assert (await until(door_only, lambda m: m["type"] == "event"))["phase"] == "closed"
        await asyncio.sleep(0.5)  # time for a wrongly routed message to arrive
        leftovers = []
        while not await door_only.receive_nothing(0.1):
            leftovers.append(await door_only.receive_json_from(1))
        assert all(m["type"] != "event" for m in leftovers), leftovers
        for communicator in (everyone, door_only, unknown_only):
            await communicator.disconnect()

    run(body)


def test_camera_states_are_sent_when_they_change(user, scene):
    door = scene["door"]

    key = token_for(user)

    async def body():
        communicator, _ = await feed(key, "camera=door")
        await database_sync_to_async(Camera.objects.filter(pk=door.pk).update)(
            state=Camera.State.CONNECTED, fps_in=10.0, fps_analysed=5.0, frames_in=100, status_at=timezone.now())
        message = await until(communicator, lambda m: m["type"] == "camera" and m["state"] == "connected")
        assert (message["id"], message["name"], message["fps_in"], message["stale"]) == (door.pk, "door", 10.0, False)
        await database_sync_to_async(Camera.objects.filter(pk=door.pk).delete)()
        assert (await until(communicator, lambda m: m["type"] == "camera_removed"))["id"] == door.pk
        await communicator.disconnect()

    run(body)


def test_ping_and_bad_messages(user):
    key = token_for(user)

    async def body():
        communicator, _ = await feed(key)
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await until(communicator, lambda m: m["type"] != "camera"))["type"] == "pong"
        for text in ("not json", '{"type": "enrol"}', "[1]", "x" * 10000, "[" * 2000 + "]" * 2000):
            await communicator.send_to(text_data=text)
            error = await until(communicator, lambda m: m["type"] != "camera")
            assert (error["type"], error["code"]) == ("error", "invalid_message")
        await communicator.disconnect()

    run(body)


def test_the_poller_stops_when_the_last_client_leaves(user):
    key = token_for(user)

    async def body():
        communicator, _ = await feed(key)
        assert hub._thread is not None and hub._thread.is_alive()
        thread = hub._thread
        await communicator.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
        assert not thread.is_alive()

    run(body)


def test_a_client_that_does_not_read_is_closed_once_its_queue_is_full(user, scene, monkeypatch, settings):
    """The transport holds every event send (as uvicorn does for a client that reads nothing): the
    messages pile up in the connection's queue, bounded, and the connection is closed with 4408."""
    from events import consumers

    monkeypatch.setattr(consumers, "QUEUE_MESSAGES", 3)
    settings.LIVE_SEND_TIMEOUT = 60.0  # the queue's bound, not the send deadline, ends it here
    hall = scene["hall"]

    async def body():
        inbox: asyncio.Queue = asyncio.Queue()
        sent: list[dict] = []
        never = asyncio.Event()

        async def send(message):
            if message["type"] == "websocket.send" and '"type": "event"' in message["text"]:
                await never.wait()
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws/events/", "query_string": b"backlog=0", "headers": [],
                 "user": user}
        task = asyncio.ensure_future(consumers.FeedConsumer.as_asgi()(scope, inbox.get, send))
        await inbox.put({"type": "websocket.connect"})
        async with asyncio.timeout(10):
            while not any(m.get("text", "").startswith('{"type": "hello"') for m in sent):
                await asyncio.sleep(0.02)
        write = database_sync_to_async(upsert)
        for _ in range(6):
            await write(camera_id=hall.pk, source_name="hall", **now_values())
        async with asyncio.timeout(10):
            while not any(m["type"] == "websocket.close" for m in sent):
                await asyncio.sleep(0.05)
        assert [m["code"] for m in sent if m["type"] == "websocket.close"] == [4408]
        await inbox.put({"type": "websocket.disconnect", "code": 4408})
        await asyncio.wait_for(task, 10)
        assert not hub._listeners()

    run(body)
