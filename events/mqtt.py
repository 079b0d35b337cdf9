"""Publishes recognition events to an MQTT broker (Home Assistant, Node-RED, anything that speaks MQTT).

Topics under MQTT_TOPIC_PREFIX (docs/api.md, "MQTT"):
- ``<prefix>/events``: every opened and closed event, JSON of events.payloads.event_payload;
- ``<prefix>/cameras/<camera>/person``: the last name a camera saw ("unknown" for a stranger), retained;
- ``<prefix>/status``: "online" (retained), and "offline" as the last will or on a clean stop.

The ``event_recorded`` receiver runs in the thread that writes events, so it only formats the message
and appends it to a bounded in-memory queue. One publisher per process, started on the first event:
paho's network thread connects and reconnects (waits capped at RECONNECT_MAX_SECONDS); a sender thread
hands queued messages to paho while connected. While the broker is away they wait in the queue (past
MQTT_QUEUE_MAX the oldest are dropped and counted); events themselves are stored either way."""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import NamedTuple

import paho.mqtt.client as paho
from django.conf import settings
from paho.mqtt.enums import CallbackAPIVersion

from core.prometheus import MQTT_CONNECTED, MQTT_MESSAGES
from events.models import Event
from events.payloads import event_payload

logger = logging.getLogger(__name__)

PUBLISHED_PHASES = ("opened", "closed")  # "updated" (still in view, several a second) is not news
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 5  # a broker that comes back is found within seconds
CONNECT_TIMEOUT_SECONDS = 5.0  # paho's network thread only: never a caller's
KEEPALIVE_SECONDS = 30
# Messages handed to paho and not yet acknowledged (QoS ≥ 1): the rest stay in our bounded queue,
# so a long outage never grows paho's own unbounded list.
WINDOW = 100
STOP_TIMEOUT_SECONDS = 3.0  # at process exit: time to send what is queued

# MQTT reserves '/' (level separator), '+' and '#' (wildcards) and NUL; control characters are
# discouraged by the specification. Each becomes '_' in a topic level made from a camera's name.
_NOT_IN_LEVEL = re.compile(r"[/+#\x00-\x1f\x7f-\x9f]")


def topic_level(name: str) -> str:
    """A camera's name as one safe topic level: '/', '+', '#' and control characters become '_'."""
    return _NOT_IN_LEVEL.sub("_", name) or "_"


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca: str = ""
    prefix: str = "facerec"
    qos: int = 1
    client_id: str = ""
    queue_max: int = 10000

    @classmethod
    def from_settings(cls, **overrides) -> MqttConfig:
        config = cls(
            host=settings.MQTT_HOST, port=settings.MQTT_PORT, username=settings.MQTT_USERNAME,
            password=settings.MQTT_PASSWORD, tls=settings.MQTT_TLS, tls_ca=settings.MQTT_TLS_CA,
            prefix=settings.MQTT_TOPIC_PREFIX.strip("/"), qos=settings.MQTT_QOS, client_id=settings.MQTT_CLIENT_ID,
            queue_max=settings.MQTT_QUEUE_MAX)
        return replace(config, **overrides)

    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels) if self.prefix else levels)


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool


def event_messages(config: MqttConfig, event: Event, phase: str) -> list[Message]:
    """What one event write publishes: nothing for "updated"; the event; and for a camera's new
    appearance, the camera's last name seen (retained)."""
    if phase not in PUBLISHED_PHASES:
        return []
    payload = event_payload(event, phase)
    messages = [Message(config.topic("events"), json.dumps(payload, ensure_ascii=False).encode(), False)]
    if phase == "opened" and event.source == Event.Source.CAMERA:
        name = payload["person_name"] or "unknown"
        messages.append(Message(config.topic("cameras", topic_level(event.source_name), "person"),
                                name.encode(), True))
    return messages


class Publisher:
    """One broker connection and its queue. ``submit`` may be called from any thread and never
    waits on the network."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.pid = os.getpid()
        self.dropped = 0
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._inflight = 0  # QoS ≥ 1 messages handed to paho, not yet acknowledged
        self._connected = False
        self._stopping = False
        self._broken = False
        self._lost_connection_logged = False
        self._client: paho.Client | None = None
        self._sender: threading.Thread | None = None

    # -- any thread ------------------------------------------------------------------------------

    def submit(self, message: Message) -> None:
        with self._cond:
            if self._stopping or self._broken:
                MQTT_MESSAGES.labels(outcome="failed").inc()
                return
            if len(self._queue) >= max(1, self.config.queue_max):
                self._queue.popleft()
                self.dropped += 1
                MQTT_MESSAGES.labels(outcome="dropped").inc()
            self._queue.append(message)
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    def queued(self) -> list[Message]:
        """The messages waiting for the broker (not yet handed to paho), oldest first."""
        with self._cond:
            return list(self._queue)

    def drop(self, predicate) -> int:
        """Removes the queued messages (not yet handed to paho) for which ``predicate`` is true."""
        with self._cond:
            kept = [message for message in self._queue if not predicate(message)]
            dropped = len(self._queue) - len(kept)
            self._queue = deque(kept)
            return dropped

    def unacknowledged(self) -> int:
        with self._cond:
            return self._inflight

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Publisher:
        """Starts the threads; no network here (paho's thread connects). A configuration paho refuses
        (a missing CA file, a wildcard in the prefix) is logged once and every message counts as failed."""
        config = self.config
        try:
            if _NOT_IN_LEVEL.search(config.prefix.replace("/", "")):
                raise ValueError(f"MQTT_TOPIC_PREFIX {config.prefix!r} holds '+', '#' or a control character")
            # Every recording process (API processes, camera workers) connects: MQTT_CLIENT_ID is a
            # prefix, or two processes with one id would keep disconnecting each other.
            client_id = f"{config.client_id or 'facerec-' + socket.gethostname()}-{os.getpid()}"
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            if config.username:
                client.username_pw_set(config.username, config.password or None)
            if config.tls:
                client.tls_set(ca_certs=config.tls_ca or None)  # None: the system's CAs
            client.will_set(config.topic("status"), b"offline", qos=config.qos, retain=True)
            client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
            client.connect_timeout = CONNECT_TIMEOUT_SECONDS
            client.on_connect = self._on_connect
            client.on_connect_fail = self._on_connect_fail
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            client.connect_async(config.host, config.port, keepalive=KEEPALIVE_SECONDS)
            client.loop_start()  # paho's thread: loop_forever(retry_first_connection=True)
        except Exception:
            logger.exception("MQTT publisher for %s:%s not started; messages are not sent", config.host, config.port)
            with self._cond:
                self._broken = True
            return self
        self._client = client
        self._sender = threading.Thread(target=self._send_queued, name="mqtt-publisher", daemon=True)
        self._sender.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Sends what is queued (for up to ``timeout`` s), says "offline" and disconnects. What could not
        be sent counts as failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(lambda: not self._queue and not self._inflight, timeout=timeout)
            self._stopping = True
            lost = len(self._queue) + self._inflight
            self._queue.clear()
            self._cond.notify_all()
        if lost:
            MQTT_MESSAGES.labels(outcome="failed").inc(lost)
            logger.warning("MQTT: %d messages not sent at stop", lost)
        if self._sender is not None:
            self._sender.join(timeout=max(0.1, deadline - time.monotonic()))
        client = self._client
        if client is None:
            return
        if self._connected:
            # A clean disconnect does not send the last will: say it ourselves.
            info = client.publish(self.config.topic("status"), b"offline", qos=self.config.qos, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (ValueError, RuntimeError):
                pass
        client.disconnect()
        client.loop_stop()
        self._connected = False
        MQTT_CONNECTED.set(0)

    # -- the sender thread -----------------------------------------------------------------------

    def _sendable(self) -> bool:
        return self._connected and bool(self._queue) and self._inflight < WINDOW

    def _send_queued(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._sendable())
                if self._stopping:
                    return
                message = self._queue.popleft()
                if self.config.qos:
                    self._inflight += 1
            self._hand_to_paho(message)

    def _hand_to_paho(self, message: Message) -> None:
        assert self._client is not None
        try:
            info = self._client.publish(message.topic, message.payload, qos=self.config.qos, retain=message.retain)
            rc = info.rc
        except Exception:  # noqa: BLE001 - a payload over the broker's limit, a bad topic: this message only
            logger.exception("MQTT: could not publish to %s", message.topic)
            rc = None
        if rc == paho.MQTT_ERR_SUCCESS:
            return
        if rc == paho.MQTT_ERR_NO_CONN and self.config.qos:
            return  # paho keeps a QoS ≥ 1 message and sends it once connected again
        with self._cond:
            if self.config.qos:
                self._inflight -= 1
            if rc == paho.MQTT_ERR_NO_CONN:  # the connection just went: back to the queue's head
                self._queue.appendleft(message)
                return
        MQTT_MESSAGES.labels(outcome="failed").inc()

    # -- paho's network thread -------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("MQTT broker %s:%s refused the connection: %s", self.config.host, self.config.port,
                           reason_code)
            return
        logger.info("MQTT connected to %s:%s", self.config.host, self.config.port)
        with self._cond:
            self._connected = True
            self._lost_connection_logged = False
            if self.config.qos:
                self._inflight += 1  # the status message below, acknowledged like any other
            self._cond.notify_all()
        MQTT_CONNECTED.set(1)
        info = client.publish(self.config.topic("status"), b"online", qos=self.config.qos, retain=True)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN) and self.config.qos:
            with self._cond:
                self._inflight -= 1

    def _on_connect_fail(self, client, userdata) -> None:
        self._log_lost_connection("could not connect")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        MQTT_CONNECTED.set(0)
        if not self._stopping:
            self._log_lost_connection(f"disconnected ({reason_code})")

    def _log_lost_connection(self, what: str) -> None:
        # Once per outage: paho retries every few seconds for as long as the broker is away.
        if not self._lost_connection_logged:
            self._lost_connection_logged = True
            logger.warning("MQTT broker %s:%s: %s; events are queued (up to %d) and sent when it is back",
                           self.config.host, self.config.port, what, self.config.queue_max)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # QoS ≥ 1: the broker acknowledged; QoS 0: the message was written to the socket.
        with self._cond:
            if self.config.qos:
                self._inflight = max(0, self._inflight - 1)
            self._cond.notify_all()
        MQTT_MESSAGES.labels(outcome="failed" if reason_code.is_failure else "published").inc()


# -- this process's publisher ---------------------------------------------------------------------

_publisher: Publisher | None = None
_publisher_lock = threading.Lock()
_atexit_registered = False


def current_publisher() -> Publisher | None:
    """This process's publisher, started on first use when MQTT_HOST is set (never at import: a forked
    worker gets its own). None while MQTT is off."""
    global _publisher, _atexit_registered
    publisher = _publisher
    if publisher is not None and publisher.pid == os.getpid():
        return publisher
    if not settings.MQTT_HOST:
        return None
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = Publisher(MqttConfig.from_settings()).start()
            if not _atexit_registered:
                atexit.register(stop)
                _atexit_registered = True
        return _publisher


def publisher_for_tests(**overrides) -> Publisher:
    """Replaces this process's publisher by a fresh one, started, bound to the settings as they are now
    (and ``overrides`` of MqttConfig's fields)."""
    global _publisher
    stop()
    with _publisher_lock:
        _publisher = Publisher(MqttConfig.from_settings(**overrides)).start()
        return _publisher


def stop(timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Flushes and stops this process's publisher (tests, process exit); the next event starts a new one."""
    global _publisher
    with _publisher_lock:
        publisher, _publisher = _publisher, None
    if publisher is not None and publisher.pid == os.getpid():
        publisher.stop(timeout)


def on_event_recorded(sender, event: Event, phase: str, **kwargs) -> None:
    """The ``event_recorded`` receiver: formats and queues, never blocks on the network, never raises."""
    if phase not in PUBLISHED_PHASES:
        return
    try:
        publisher = current_publisher()
        if publisher is None:
            return
        for message in event_messages(publisher.config, event, phase):
            publisher.submit(message)
    except Exception:  # noqa: BLE001 - recording an event must never fail because of MQTT
        logger.exception("MQTT: event %s not queued", getattr(event, "uid", "?"))
        MQTT_MESSAGES.labels(outcome="failed").inc()


# -- a person's erasure ---------------------------------------------------------------------------

def cameras_last_seeing(*, person_id: int) -> list[str]:
    """The cameras whose last named appearance was this person's: their retained
    ``cameras/<name>/person`` message holds the person's name. Read before the events are unlinked."""
    names = set(Event.objects.filter(person_id=person_id, source=Event.Source.CAMERA)
                .values_list("source_name", flat=True).distinct())
    return sorted(name for name in names
                  if Event.objects.filter(source=Event.Source.CAMERA, source_name=name)
                  .order_by("-named_at", "-id").values_list("person_id", flat=True).first() == person_id)


def person_forget(*, person_id: int, cameras: list[str]) -> dict[str, int]:
    """After the erasure commits, in this process: the messages still queued for the broker that name
    the person are dropped, and the retained names of ``cameras`` are cleared (an empty retained
    message deletes it at the broker). Nothing while MQTT is off. Returns the counts for the audit."""
    if not settings.MQTT_HOST:
        return {}
    from django.db import transaction

    transaction.on_commit(lambda: _forget(person_id, cameras))
    return {"mqtt_retained_cleared": len(cameras)}


def _forget(person_id: int, cameras: list[str]) -> None:
    try:
        publisher = current_publisher()
        if publisher is None:
            return
        dropped = publisher.drop(lambda message: _names(message, person_id))
        for name in cameras:
            publisher.submit(Message(publisher.config.topic("cameras", topic_level(name), "person"), b"", True))
        if dropped:
            logger.info("MQTT: %d queued messages of an erased person dropped", dropped)
    except Exception:  # noqa: BLE001 - the erasure is committed; the broker's copy is logged as left
        logger.exception("MQTT: retained names of an erased person not cleared (cameras %s)", cameras)


def _names(message: Message, person_id: int) -> bool:
    if message.retain:
        return False  # a camera's retained name: the clearing message queued after it wins
    try:
        payload = json.loads(message.payload)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("person_id") == person_id
