"""Helpers of the webhook tests (no tests here): a real HTTP receiver on 127.0.0.1, events written by
the live pipeline's own upsert, and fixtures giving the delivery backend small timeouts."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from tests.event_rows import T0, write_event


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Answers each POST with the next entry of ``script`` (the last one repeats): a status code,
    or ("hang", seconds) to say nothing for that long. Every request is recorded, even a hung one."""

    def __init__(self, script=(200,)) -> None:
        self.script = list(script)
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    action = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                    receiver.arrived.notify_all()
                if isinstance(action, tuple):
                    time.sleep(action[1])
                    action = 200
                try:
                    self.send_response(action)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        end = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count and time.monotonic() < end:
                self.arrived.wait(timeout=max(0.0, end - time.monotonic()))
        return list(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(script=(200,)) -> Receiver:
        started.append(Receiver(script))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def fast_webhooks(settings):
    """Loopback receivers allowed, small timeout and backoffs; nothing left running afterwards."""
    from webhooks import backends
    from webhooks.selectors import routes_changed

    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_BACKOFF_SECONDS = 0.05
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 0.2
    settings.CELERY_BROKER_URL = ""
    routes_changed()  # the previous test's database is gone, and its subscriptions with it
    yield settings
    try:
        backends.wait_idle(30)
    finally:
        if backends._scheduler is not None:
            backends._scheduler.clear()
        routes_changed()


def event(**changes):
    """An event as the live pipeline writes it (the upsert sends event_recorded after commit)."""
    return write_event(**changes)


def close(recorded, **changes):
    """The same event's closing write (phase "closed")."""
    return event(uid=recorded.uid, kind=recorded.kind, person_id=recorded.person_id, camera_id=recorded.camera_id,
                 closed_at=T0 + timedelta(seconds=3), last_seen=T0 + timedelta(seconds=3), **changes)


def subscribe(url: str, **fields):
    from webhooks.services import subscription_create

    return subscription_create(name=fields.pop("name", "hook"), url=url, **fields)


def counter(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("facerec_webhook_attempts_total", {"outcome": outcome}) or 0.0
