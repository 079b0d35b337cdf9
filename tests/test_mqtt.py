"""MQTT publishing against the Mosquitto on 127.0.0.1:1883 (CI runs one; without it these tests skip):
the events topic and its payload, the last name per camera (retained), safe topic levels, the
availability topic, metrics. Real paho subscribers; a unique topic prefix per test, and the retained
messages a test left are cleared afterwards."""

from __future__ import annotations

import json
import queue
import socket
import threading
import uuid
from datetime import timedelta

import paho.mqtt.client as paho
import pytest

from core.prometheus import process_registry
from events import mqtt
from events.models import Event
from events.payloads import event_payload
from people.services import person_create
from streams.models import Camera
from tests.event_rows import T0, write_event
from tests.processes import wait_for

HOST, PORT = "127.0.0.1", 1883


# ---- helpers shared with test_mqtt_outage.py ---------------------------------------------------

class Subscriber:
    """A real MQTT client that collects what it receives on ``topic`` (QoS 1). ``clean=False`` with a
    fixed client id keeps its subscription in a broker with persistence across the broker's restarts;
    paho's thread reconnects it."""

    def __init__(self, port: int, topic: str, *, client_id: str | None = None, clean: bool = True) -> None:
        self.topic = topic
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex}",
                                  clean_session=clean)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.connect(HOST, port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), f"no SUBACK for {topic} within 10 s"

    def take(self, count: int, timeout: float = 15) -> list[paho.MQTTMessage]:
        taken = []
        for _ in range(count):
            try:
                taken.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"{self.topic}: {len(taken)} of {count} messages within {timeout} s: "
                                     f"{[(m.topic, m.payload[:80]) for m in taken]}") from None
        return taken

    def take_until(self, done, timeout: float = 30) -> list[paho.MQTTMessage]:
        """Messages until ``done(messages so far)`` is true."""
        taken: list[paho.MQTTMessage] = []
        wait_for(lambda: self._drain(taken) or done(taken), timeout=timeout, interval=0.05,
                 what=f"messages on {self.topic}", detail=lambda: str([(m.topic, m.payload[:80]) for m in taken]))
        return taken

    def _drain(self, into: list) -> bool:
        while not self.messages.empty():
            into.append(self.messages.get())
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, pattern: str) -> dict[str, paho.MQTTMessage]:
    """The retained messages under ``pattern``: a fresh subscriber gets them first, then the marker we
    publish after subscribing (the broker keeps one connection's messages in order)."""
    marker = f"{pattern.rstrip('#+/')}/_marker/{uuid.uuid4().hex}"
    subscriber = Subscriber(port, pattern)
    try:
        subscriber.client.subscribe(marker, qos=1)
        subscriber.client.publish(marker, b"end", qos=1)
        messages = subscriber.take_until(lambda got: any(m.topic == marker for m in got))
    finally:
        subscriber.close()
    return {m.topic: m for m in messages if m.retain}


def clear_retained(port: int, prefix: str) -> None:
    """Removes what a test left retained (an empty retained message deletes it), so the machine's
    broker does not collect a topic per test run."""
    topics = retained(port, f"{prefix}/#")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(HOST, port)
    client.loop_start()
    try:
        for topic in topics:
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def broker_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


def metric(name: str, **labels: str) -> float:
    return process_registry().get_sample_value(name, labels) or 0.0


def record(commit, **changes) -> Event:
    """event_upsert as the live pipeline calls it; its after-commit signal runs the MQTT receiver."""
    with commit(execute=True):
        return write_event(**changes)


def expected(event: Event, phase: str) -> dict:
    return json.loads(json.dumps(event_payload(event, phase)))


def flushed(publisher: mqtt.Publisher) -> bool:
    return not publisher.queued() and not publisher.unacknowledged()


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def prefix() -> str:
    return f"facerec-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def publisher(settings, prefix, db):
    if not broker_answers(PORT):
        pytest.skip(f"no MQTT broker answers on {HOST}:{PORT} (CI runs Mosquitto there)")
    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TOPIC_PREFIX = HOST, PORT, prefix
    publisher = mqtt.publisher_for_tests()
    try:
        wait_for(lambda: publisher.connected and flushed(publisher), timeout=15, what="publisher connected")
        yield publisher
    finally:
        mqtt.stop(timeout=5)
        clear_retained(PORT, prefix)


# ---- the tests -----------------------------------------------------------------------------------

def test_opened_and_closed_events_are_published_with_their_payload(publisher, prefix, commit):
    events = Subscriber(PORT, f"{prefix}/events")
    published_before = metric("facerec_mqtt_messages_total", outcome="published")
    try:
        ann = person_create(name="Ann")
        door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
        uid = uuid.uuid4()
        opened = expected(record(commit, uid=uid, camera_id=door.pk, person_id=ann.pk), "opened")
        record(commit, uid=uid, camera_id=door.pk, person_id=ann.pk, frames_seen=20)  # "updated": not sent
        end = T0 + timedelta(seconds=4)
        closed = expected(record(commit, uid=uid, camera_id=door.pk, person_id=ann.pk, last_seen=end,
                                 closed_at=end), "closed")
        stranger = expected(record(commit, camera_id=door.pk, track_id=2), "opened")
        # One publisher's QoS 1 messages arrive in order: an "updated" would come before "closed".
        received = events.take(3)
    finally:
        events.close()
    assert [json.loads(m.payload) for m in received] == [opened, closed, stranger]
    assert [(m.topic, m.retain, m.qos) for m in received] == [(f"{prefix}/events", False, 1)] * 3
    assert opened["type"] == "event" and opened["person_name"] == "Ann" and opened["camera_name"] == "door"
    assert closed["phase"] == "closed" and closed["closed_at"] is not None
    assert stranger["kind"] == "unknown" and stranger["person_name"] is None
    wait_for(lambda: flushed(publisher), timeout=10, what="acknowledged")
    # Acknowledged by the broker: 3 on events/, 2 on cameras/door/person.
    assert metric("facerec_mqtt_messages_total", outcome="published") - published_before == 5


def test_the_last_name_each_camera_saw_is_retained(publisher, prefix, commit):
    ann, bob = person_create(name="Ann"), person_create(name="Bob")
    record(commit, source_name="door")
    record(commit, source_name="door", person_id=ann.pk, track_id=2)
    record(commit, source_name="gate", person_id=bob.pk, track_id=3)
    record(commit, source_name="gate", track_id=4)
    record(commit, source="browser", source_name="browser:reader", person_id=bob.pk, track_id=5)  # events only
    wait_for(lambda: flushed(publisher), timeout=10, what="acknowledged")

    later = retained(PORT, f"{prefix}/cameras/#")  # a subscriber that connects after the fact
    assert {topic: m.payload.decode() for topic, m in later.items()} == {
        f"{prefix}/cameras/door/person": "Ann", f"{prefix}/cameras/gate/person": "unknown"}


def test_camera_names_become_one_safe_topic_level(publisher, prefix, commit):
    record(commit, source_name="gate/2")
    record(commit, source_name="a+b#c", track_id=2)
    wait_for(lambda: flushed(publisher), timeout=10, what="acknowledged")
    assert set(retained(PORT, f"{prefix}/cameras/#")) == {f"{prefix}/cameras/gate_2/person",
                                                          f"{prefix}/cameras/a_b_c/person"}
    assert mqtt.topic_level("nul\x00tab\t") == "nul_tab_" and mqtt.topic_level("") == "_"
    assert mqtt.topic_level("Front door (é)") == "Front door (é)"


def test_status_is_online_then_offline_after_a_clean_stop(publisher, prefix):
    assert retained(PORT, f"{prefix}/status")[f"{prefix}/status"].payload == b"online"
    assert metric("facerec_mqtt_connected") == 1
    mqtt.stop(timeout=5)
    assert retained(PORT, f"{prefix}/status")[f"{prefix}/status"].payload == b"offline"
    assert metric("facerec_mqtt_connected") == 0


def test_nothing_starts_while_mqtt_is_off(settings, db, commit):
    settings.MQTT_HOST = ""
    record(commit)
    assert mqtt.current_publisher() is None
    assert "mqtt-publisher" not in {thread.name for thread in threading.enumerate()}
    assert Event.objects.count() == 1


def test_a_publisher_that_cannot_start_never_fails_recording(settings, db, commit):
    settings.MQTT_HOST, settings.MQTT_TOPIC_PREFIX = HOST, "bad+prefix"
    failed_before = metric("facerec_mqtt_messages_total", outcome="failed")
    try:
        event = record(commit)  # started lazily by the event, refused, logged
        assert Event.objects.filter(pk=event.pk).exists()
        assert metric("facerec_mqtt_messages_total", outcome="failed") - failed_before == 2
    finally:
        mqtt.stop(timeout=1)
