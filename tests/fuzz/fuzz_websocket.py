"""Fuzz the WebSocket message handling: text messages to the live stream (``ws/live/``:
LiveConsumer's control messages ping / config / enrol) and to the live feed (``ws/events/``:
FeedConsumer, pings only), and the query strings both parse when connecting. In process through
config.asgi (as tests/test_live_ws.py does), on a throw-away database.

Every message must be answered with a documented reply (pong, config, enrolled, or an error with
a documented code); ``internal_error`` (an exception the consumer caught) or ``database_unavailable``
is a crash, and so is an open connection that closes. A connection must be accepted or refused
with 4400 / 4401, never closed with 1011."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import _common
import atheris

with atheris.instrument_imports(include=_common.SERVICE_PACKAGES):
    IDS = _common.django_setup()
    from config.asgi import application
    from tests.ws_client import Communicator

ORIGIN = [(b"origin", b"http://testserver")]
KEYS = ["type", "min_face_size", "gallery", "person_id"]
TYPES = ["ping", "config", "enrol", "hello", "", None, 1]
REPLIES = {"live": {"pong", "config", "enrolled", "error"}, "feed": {"pong", "error"}}
CRASHES = {"internal_error", "database_unavailable"}
PATHS = {"live": "/ws/live/", "feed": "/ws/events/"}
QUERY_NAMES = ["token", "min_face_size", "gallery", "camera", "kind", "backlog"]
loop = asyncio.new_event_loop()


def _value(fdp: atheris.FuzzedDataProvider):
    choice = fdp.ConsumeIntInRange(0, 7)
    if choice == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 12))  # up to 96 bits: past int64 too
    if choice == 1:
        return fdp.ConsumeRegularFloat()
    if choice == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 32))
    if choice == 3:
        return fdp.PickValueInList(["9", "²", " ", "0", "-"]) * fdp.ConsumeIntInRange(0, 5000)  # long digit strings
    if choice == 4:
        return fdp.ConsumeBool()
    if choice == 5:
        return None
    if choice == 6:
        return [_value(fdp)] if fdp.remaining_bytes() else []
    return {"a": _value(fdp)} if fdp.remaining_bytes() else {}


def _text(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeIntInRange(0, 3) == 0:  # raw text
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 512))
    message = {"type": fdp.PickValueInList(TYPES)}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        message[fdp.PickValueInList(KEYS)] = _value(fdp)
    text = json.dumps(message)
    return "[" * 100_000 + "]" * 100_000 if fdp.ConsumeIntInRange(0, 63) == 0 else text  # deep: over the size cap


async def _open(target: str, query: str) -> tuple[Communicator, dict]:
    communicator = Communicator(application, f"{PATHS[target]}?{query}", headers=ORIGIN)
    if not await communicator.connect(timeout=10):
        raise _common.Finding(f"{target}?{query[:200]}: not accepted")
    return communicator, await _next(communicator, f"{target}?{query[:200]}")


async def _next(communicator: Communicator, what: str) -> dict:
    output = await communicator.receive_output(timeout=10)
    if output["type"] == "websocket.close":
        return {"type": "closed", "code": output.get("code")}
    message = json.loads(output["text"])
    if message.get("type") == "error" and message.get("code") in CRASHES:
        raise _common.Finding(f"{what}: {message}")
    return message


async def _reply(target: str, communicator: Communicator, text: str) -> None:
    await communicator.send_to(text_data=text)
    while True:  # the feed may interleave camera or event messages: the reply is the next answer
        message = await _next(communicator, f"{target} <- {text[:200]!r}")
        if message["type"] == "closed":
            raise _common.Finding(f"{target} <- {text[:200]!r}: the connection closed ({message['code']})")
        if message["type"] in REPLIES[target]:
            return


async def _connect_once(target: str, query: str) -> None:
    communicator, first = await _open(target, query)
    if first["type"] == "error":
        closing = await _next(communicator, query)
        if closing.get("code") not in (4400, 4401):
            raise _common.Finding(f"{target}?{query[:200]}: refused with {first} then {closing}")
    elif first["type"] not in ("ready", "hello"):
        raise _common.Finding(f"{target}?{query[:200]}: first message {first}")
    await communicator.disconnect()


CONNECTIONS: dict[str, Communicator] = {}


async def _connection(target: str) -> Communicator:
    if target not in CONNECTIONS:
        token = IDS["staff"] if target == "live" else IDS["user"]
        CONNECTIONS[target], first = await _open(target, f"token={token}")
        assert first["type"] in ("ready", "hello"), first
    return CONNECTIONS[target]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.PickValueInList(["live", "feed"])
    if fdp.ConsumeIntInRange(0, 7) == 0:  # a new connection with fuzzed parameters
        pairs = [(fdp.PickValueInList(QUERY_NAMES), str(_value(fdp))) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        if fdp.ConsumeBool():
            pairs.append(("token", IDS["user"]))
        query = urlencode(pairs, errors="surrogatepass")  # as a client sends it: percent-encoded UTF-8
        loop.run_until_complete(_connect_once(target, query))
        return
    text = _text(fdp)
    loop.run_until_complete(_reply(target, loop.run_until_complete(_connection(target)), text))


def seeds() -> list[bytes]:
    return [bytes([0, 1]) + json.dumps({"type": "config", "min_face_size": 80}).encode(), bytes([1, 0]),
            bytes(16), bytes(range(64))]


if __name__ == "__main__":
    _common.run(test_one_input, seeds(), max_len=4096)
