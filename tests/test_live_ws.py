"""The browser's live stream, ws/live/: the protocol in-process (Channels' WebsocketCommunicator on
config.asgi), the transport on a real uvicorn (a client that never reads, the round trip)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import statistics
import struct
import threading
import time

import pytest
import websocket
from asgiref.sync import async_to_sync
from PIL import Image

from conftest import MISC, TEST
from tests.processes import wait_for
from tests.ws_client import Communicator

pytestmark = [pytest.mark.django_db(transaction=True)]
ORIGIN = [(b"origin", b"http://testserver")]
OBAMA = (TEST / "obama1.jpg").read_bytes()
STRANGER_PATH = MISC / "lin-manuel-miranda.png"


def jpeg_640x480(path=MISC / "obama-480p.jpg") -> bytes:
    """A 640×480 JPEG with one face (the middle of a 853×480 frame)."""
    image = Image.open(path).convert("RGB")
    left = (image.width - 640) // 2
    out = io.BytesIO()
    image.crop((left, 0, left + 640, 480)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def token_for(user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def run(coroutine_function):
    """Run an async test body (thread-sensitive database calls run on this thread)."""
    return async_to_sync(coroutine_function)()


async def open_stream(query: str = "", *, expect_ready: bool = True):
    from config.asgi import application

    communicator = Communicator(application, "/ws/live/" + (f"?{query}" if query else ""), headers=ORIGIN)
    assert await communicator.connect(timeout=10)
    if expect_ready:
        ready = await communicator.receive_json_from(timeout=10)
        assert ready["type"] == "ready", ready
    return communicator


async def next_json(communicator, timeout: float = 60) -> dict:
    return await communicator.receive_json_from(timeout=timeout)


async def frames_until(communicator, frame: bytes, done, *, limit: int) -> list[dict]:
    """Send ``frame`` and wait for its answer, up to ``limit`` times, until ``done(answer)``."""
    answers = []
    for _ in range(limit):
        await communicator.send_to(bytes_data=frame)
        answers.append(await next_json(communicator))
        if done(answers[-1]):
            return answers
    raise AssertionError(f"not within {limit} frames: {answers}")


@pytest.fixture(autouse=True)
def events_written():
    """Each test's closing events are written before the next test's database: no stray rows."""
    yield
    from streams import browser

    if browser._writer is not None:
        time.sleep(0.3)  # a disconnect's close runs on the pool just after the test's last await
        browser._writer.flush(timeout=10)


# ---- connecting ------------------------------------------------------------------------------

def test_the_origin_is_checked_for_session_connections_and_not_for_tokens(user, client):
    """A cookie rides along with a WebSocket opened by any site: session connections must come
    from an allowed host. A token carries no ambient credential: devices need no Origin header."""
    from config.asgi import application

    key = token_for(user)
    client.force_login(user)
    cookie = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]

    async def body():
        foreign = Communicator(application, "/ws/live/", headers=[(b"origin", b"https://evil.example"), *cookie])
        assert await foreign.connect() is False  # refused at the handshake (HTTP 403)
        same_site = Communicator(application, "/ws/live/", headers=[*ORIGIN, *cookie])
        assert await same_site.connect()
        assert (await next_json(same_site, 10))["user"] == "reader"
        await same_site.disconnect()
        device = Communicator(application, f"/ws/live/?token={key}")  # no Origin at all
        assert await device.connect()
        assert (await next_json(device, 10))["type"] == "ready"
        await device.disconnect()

    run(body)


def test_token_gives_ready(user):
    key = token_for(user)

    async def body():
        communicator = await open_stream(f"token={key}", expect_ready=False)
        ready = await next_json(communicator, 10)
        assert ready == {"type": "ready", "user": "reader", "staff": False, "gallery": None,
                         "max_frame_bytes": 4 * 1024 * 1024, "min_face_size": 40}
        await communicator.send_to(text_data='{"type": "ping"}')
        assert await next_json(communicator, 10) == {"type": "pong"}
        await communicator.disconnect()

    run(body)


@pytest.mark.parametrize(("query", "code", "close"), [
    ("", "not_authenticated", 4401),
    ("token=not-a-token", "authentication_failed", 4401),
    ("gallery=no-such-gallery", "unknown_gallery", 4400),
    ("min_face_size=5", "invalid", 4400),
])
def test_refused_connections(user, query, code, close):
    if "token" not in query and code != "not_authenticated":
        query = f"token={token_for(user)}&{query}"

    async def body():
        communicator = await open_stream(query, expect_ready=False)
        error = await next_json(communicator, 10)
        assert error["type"] == "error" and error["code"] == code and error["message"], error
        assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": close}
        await communicator.wait(timeout=10)

    run(body)


# ---- recognising -----------------------------------------------------------------------------

def test_known_face_is_named_and_its_event_closed_on_disconnect(enrolled, user):
    from events.models import Event

    key, obama = token_for(user), enrolled["obama"]

    async def body():
        communicator = await open_stream(f"token={key}")
        answers = await frames_until(communicator, OBAMA, lambda a: a["faces"] and a["faces"][0]["decided"],
                                     limit=5)
        result = answers[-1]
        assert result["type"] == "result" and result["frame"] == len(answers) == result["received"]
        assert (result["width"], result["height"]) == (1480, 832)
        face = result["faces"][0]
        assert face["name"] == "obama" and face["person_id"] == obama.pk and face["decided"] is True
        assert face["distance"] < 0.6 and set(face["box"]) == {"top", "right", "bottom", "left"}
        assert face["box"]["right"] - face["box"]["left"] > 80
        assert set(result["timings_ms"]) == {"queue", "decode", "detect", "landmarks", "embed", "match", "total"}
        await communicator.disconnect()

    run(body)
    event = wait_for(lambda: Event.objects.filter(person=obama, closed_at__isnull=False).first(), timeout=30,
                     what="the appearance's event closed")
    assert (event.source, event.source_name, event.user_id, event.kind) == ("browser", "browser:reader", user.pk,
                                                                           "known")
    assert event.gallery_id is None and event.closed_at >= event.first_seen


def test_appearance_ends_when_frames_stop_while_still_connected(enrolled, user):
    from channels.db import database_sync_to_async

    from events.models import Event

    key, obama = token_for(user), enrolled["obama"]
    closed = database_sync_to_async(lambda: Event.objects.filter(person=obama, closed_at__isnull=False).first())

    async def body():
        communicator = await open_stream(f"token={key}")
        await frames_until(communicator, OBAMA, lambda a: a["faces"] and a["faces"][0]["decided"], limit=5)
        deadline = time.monotonic() + 20  # track timeout 1 s + rejoin 2 s, checked by the 1 s tick
        while (event := await closed()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        await communicator.send_to(text_data='{"type": "ping"}')
        assert await next_json(communicator, 10) == {"type": "pong"}  # the stream itself goes on
        await communicator.disconnect()
        return event

    event = run(body)
    assert event is not None, "the appearance was not closed by the ticks"
    assert event.closed_at == event.last_seen


def test_stranger_is_unknown(enrolled, user):
    key, frame = token_for(user), STRANGER_PATH.read_bytes()

    async def body():
        communicator = await open_stream(f"token={key}")
        answers = await frames_until(communicator, frame, lambda a: a["faces"] and a["faces"][0]["decided"],
                                     limit=6)
        assert answers[-1]["faces"][0]["name"] == "unknown" and answers[-1]["faces"][0]["person_id"] is None
        assert all(a["faces"][0]["name"] is None for a in answers[:-1])  # undecided: no name yet
        await communicator.disconnect()

    run(body)


def test_bad_frames_and_messages_leave_the_connection_up(user, settings):
    settings.LIVE_MAX_FRAME_BYTES = 1000
    key = token_for(user)

    async def body():
        communicator = await open_stream(f"token={key}")
        await communicator.send_to(bytes_data=b"this is not an image at all")
        error = await next_json(communicator)
        assert error["type"] == "error" and error["code"] in ("not_an_image", "corrupt_image")
        assert error["frame"] == 1
        await communicator.send_to(bytes_data=b"\xff" * 1001)
        assert (await next_json(communicator))["code"] == "frame_too_large"
        for text in ("not json", "[1, 2]", '{"type": "nope"}', '{"no": "type"}', '{"type": "enrol", "person_id": 1}'):
            await communicator.send_to(text_data=text)
            answer = await next_json(communicator)
            assert answer["type"] == "error", (text, answer)
            assert answer["code"] == ("permission_denied" if "enrol" in text else "invalid_message"), (text, answer)
        await communicator.send_to(text_data='{"type": "config", "gallery": "no-such-gallery"}')
        assert (await next_json(communicator))["code"] == "unknown_gallery"
        await communicator.send_to(text_data='{"type": "config", "min_face_size": 5}')
        assert (await next_json(communicator))["code"] == "invalid_message"
        await communicator.send_to(text_data='{"type": "config", "gallery": null, "min_face_size": 60}')
        assert await next_json(communicator) == {"type": "config", "gallery": None, "min_face_size": 60}
        await communicator.send_to(text_data='{"type": "ping"}')
        assert await next_json(communicator) == {"type": "pong"}
        await communicator.disconnect()

    run(body)


def test_enrol_by_staff_stores_a_face_and_refuses_others(engine, staff, user):
    from core.audit.models import AuditRecord
    from people.models import Face
    from people.services import person_create

    person = person_create(name="newcomer")
    staff_key, user_key = token_for(staff), token_for(user)
    frame = jpeg_640x480()

    async def body():
        communicator = await open_stream(f"token={staff_key}")
        await communicator.send_to(text_data=json.dumps({"type": "enrol", "person_id": person.pk}))
        assert (await next_json(communicator))["code"] == "no_face"  # no frame analysed yet
        await communicator.send_to(bytes_data=frame)
        assert (await next_json(communicator))["type"] == "result"
        await communicator.send_to(text_data=json.dumps({"type": "enrol", "person_id": 999999}))
        assert (await next_json(communicator))["code"] == "not_found"
        await communicator.send_to(text_data=json.dumps({"type": "enrol", "person_id": person.pk}))
        enrolled = await next_json(communicator)
        await communicator.disconnect()

        reader = await open_stream(f"token={user_key}")
        await reader.send_to(text_data=json.dumps({"type": "enrol", "person_id": person.pk}))
        assert (await next_json(reader))["code"] == "permission_denied"
        await reader.disconnect()
        return enrolled

    enrolled = run(body)
    face = Face.objects.get(person=person)
    assert enrolled == {"type": "enrolled", "person_id": person.pk, "person_name": "newcomer", "face_id": face.pk}
    assert face.embedding is not None
    assert AuditRecord.objects.filter(action="face.enrol", actor=staff, target_ids=[face.pk]).exists()


def test_frames_sent_faster_than_analysed_are_dropped(engine, user, settings):
    settings.LIVE_QUEUE_FRAMES = 1
    key, frame, sent = token_for(user), jpeg_640x480(), 12

    async def body():
        communicator = await open_stream(f"token={key}")
        for _ in range(sent):
            await communicator.send_to(bytes_data=frame)
        results = []
        while not results or results[-1]["frame"] != sent:  # the newest frame is never dropped
            answer = await next_json(communicator)
            assert answer["type"] == "result", answer
            results.append(answer)
        await communicator.disconnect()
        return results

    results = run(body)
    last = results[-1]
    assert last["received"] == sent and last["dropped"] >= 1
    assert len(results) + last["dropped"] == last["received"]  # each frame analysed or dropped, once
    numbers = [r["frame"] for r in results]
    assert numbers == sorted(set(numbers))
    assert all(len(r["faces"]) == 1 for r in results)


# ---- a real server ---------------------------------------------------------------------------

@pytest.fixture
def server(settings, tmp_path):
    from tests.live_server import LiveServer

    live = LiveServer(settings, tmp_path, overrides={"LIVE_SEND_TIMEOUT": 2.0}).wait_ready()
    yield live
    live.stop()


def connect(server, key: str) -> websocket.WebSocket:
    client = websocket.create_connection(server.ws_url(token=key), origin=server.origin, timeout=60)
    assert json.loads(client.recv())["type"] == "ready"
    return client


def exchange(client, frame: bytes, number: int) -> dict:
    client.send_binary(frame)
    while True:
        answer = json.loads(client.recv())
        if answer.get("frame") == number:
            return answer


@pytest.mark.slow
def test_round_trip_on_a_real_server(enrolled, user, server):
    frame, client = jpeg_640x480(), connect(server, token_for(user))
    for number in range(1, 4):  # the models load on the first frame
        assert exchange(client, frame, number)["type"] == "result"
    trips = []
    for number in range(4, 44):
        started = time.perf_counter()
        answer = exchange(client, frame, number)
        trips.append((time.perf_counter() - started) * 1000.0)
        assert answer["faces"][0]["name"] == "obama"
    client.close()
    p50, p95 = statistics.median(trips), statistics.quantiles(trips, n=20)[-1]
    print(f"\nround trip, 640x480 JPEG with one face, {len(trips)} frames: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert p95 < 5000


def _raw_client(server, key: str) -> socket.socket:
    """A WebSocket client on a socket with a tiny receive buffer (it will never read)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    nonce = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/live/?token={key} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Origin: {server.origin}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _client_message(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (mask key 0: the payload goes as is)."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size) \
        if size < 65536 else bytes([0x80 | 127]) + struct.pack("!Q", size)
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


def _close_code(stream: bytes) -> int | None:
    """The code of the close frame in what the server sent, if one is there."""
    at = 0
    while at + 2 <= len(stream):
        opcode, size = stream[at] & 0x0F, stream[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = struct.unpack("!H", stream[at:at + 2])[0], at + 2
        elif size == 127:
            size, at = struct.unpack("!Q", stream[at:at + 8])[0], at + 8
        if opcode == 8 and at + 2 <= len(stream):
            return struct.unpack("!H", stream[at:at + 2])[0]
        at += size
    return None


@pytest.mark.slow
def test_a_client_that_never_reads_is_closed_and_memory_stays_bounded(enrolled, user, server):
    key, frame = token_for(user), jpeg_640x480()
    reader = connect(server, key)
    exchange(reader, frame, 1)  # the models are loaded: what follows is the flood's cost only
    baseline = server.rss_kb()
    stop, answered = threading.Event(), []

    def normal_client():
        number = 1
        while not stop.is_set():
            number += 1
            answered.append(exchange(reader, frame, number))

    normal = threading.Thread(target=normal_client, daemon=True)
    normal.start()
    sock = _raw_client(server, key)
    sock.settimeout(0.2)
    # Frames, and tiny invalid messages that each make a ~110-byte error: enough output to fill the
    # kernel's buffers (the server's send buffer grows to 4 MB on loopback) within seconds.
    burst = _client_message(2, frame) + _client_message(1, b"x") * 200 + _client_message(1, b'{"type":"ping"}') * 20
    pending, sent, peak, started = b"", 0, baseline, time.monotonic()
    while time.monotonic() - started < 20:
        if not pending:
            pending = burst
        try:
            count = sock.send(pending)
            pending, sent = pending[count:], sent + count
        except TimeoutError:
            pass  # the server reads no more: TCP holds the client back
        peak = max(peak, server.rss_kb())
    stop.set()
    normal.join(60)
    after = server.rss_kb()
    log = server.log.read_text(errors="replace")
    print(f"\nnever-reading client: {sent / 1e6:.1f} MB sent in 20 s; server RSS {baseline / 1024:.0f} MB before, "
          f"peak {peak / 1024:.0f} MB, {after / 1024:.0f} MB after; normal client: {len(answered)} results")
    assert "closing (4408)" in log, server.log_tail()
    assert peak - baseline < 100 * 1024, "the server's memory grew by more than 100 MB"
    assert len(answered) >= 5, "the normal client was starved"

    sock.settimeout(10)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if _close_code(received) is not None:
                break
    except (TimeoutError, ConnectionResetError):
        pass
    sock.close()
    print(f"the never-reading client then read {len(received)} bytes; close code {_close_code(received)}")
    assert _close_code(received) in (4408, None)  # 4408 when it arrives, else the socket was dropped
    reader.close()
