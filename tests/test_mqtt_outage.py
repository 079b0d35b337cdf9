"""MQTT when the broker is away: a private Mosquitto (its own port and folder) is stopped and started
again. Recording never waits on the broker, events stay stored, what was queued meanwhile is
published once the broker is back, and a full queue drops its oldest messages.

The subscriber keeps a persistent session (clean_session off, a fixed id; the broker saves sessions
at shutdown): whichever of it and the publisher reconnects first, it gets every message."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from events import mqtt
from events.models import Event
from tests.processes import Process, free_port, wait_for
from tests.test_mqtt import Subscriber, broker_answers, metric, record

MOSQUITTO = "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason=f"{MOSQUITTO} is not installed")


class PrivateMosquitto:
    """A throw-away broker on a free loopback port: started, stopped (SIGTERM) and started again on
    the same port; the machine's own broker is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        if os.geteuid() == 0:  # mosquitto started as root runs as its own user: it must write here
            shutil.chown(workdir, "mosquitto", "mosquitto")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nautosave_interval 0\nlog_dest stderr\n")
        self.process: Process | None = None

    def start(self) -> PrivateMosquitto:
        self.process = Process(f"mosquitto-{self.port}", [MOSQUITTO, "-c", str(self.conf)], dict(os.environ),
                               self.workdir.parent / f"mosquitto-{self.port}.log")
        process = self.process
        wait_for(lambda: (process.alive() or pytest.fail(process.log_tail())) and broker_answers(self.port),
                 timeout=15, what="private mosquitto up", detail=process.log_tail)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path):
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = PrivateMosquitto(workdir)
    try:
        yield broker
    finally:
        mqtt.stop(timeout=1)
        broker.stop()


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def prefix() -> str:
    return f"facerec-test/{uuid.uuid4().hex[:12]}"


def durable_subscriber(broker: PrivateMosquitto, prefix: str) -> Subscriber:
    """The same client id for the same prefix: the broker keeps its session across restarts."""
    client_id = "test-durable-" + prefix.replace("/", "-")
    return Subscriber(broker.port, f"{prefix}/events", client_id=client_id, clean=False)


def record_during_outage(commit, publisher: mqtt.Publisher, count: int) -> list[uuid.UUID]:
    """Records ``count`` camera events with the broker away; checks that each only queued its
    messages: none reached paho, and no call came near a connection attempt's timeout."""
    queued_before = len(publisher.queued())
    uids, longest = [], 0.0
    for track in range(count):
        started = time.monotonic()
        uids.append(record(commit, track_id=100 + track).uid)
        longest = max(longest, time.monotonic() - started)
    assert not publisher.connected
    # Two messages per event (events/, cameras/door/person), waiting in the queue, not in paho's hands.
    assert len(publisher.queued()) - queued_before == 2 * count
    assert longest < mqtt.CONNECT_TIMEOUT_SECONDS, "the receiver must not wait for the broker"
    assert set(Event.objects.filter(uid__in=uids).values_list("uid", flat=True)) == set(uids), "stored"
    return uids


def uids_received(subscriber: Subscriber, wanted: list[uuid.UUID]) -> list[str]:
    messages = subscriber.take_until(lambda got: {json.loads(m.payload)["uid"] for m in got} >= set(map(str, wanted)))
    return [json.loads(m.payload)["uid"] for m in messages]


def test_events_recorded_while_the_broker_is_down_are_published_when_it_is_back(broker, prefix, db, commit):
    broker.start()
    subscriber = durable_subscriber(broker, prefix)
    try:
        publisher = mqtt.publisher_for_tests(host="127.0.0.1", port=broker.port, prefix=prefix)
        wait_for(lambda: publisher.connected, timeout=15, what="publisher connected")
        before = record(commit, track_id=1).uid
        assert uids_received(subscriber, [before]) == [str(before)]

        broker.stop()
        wait_for(lambda: not publisher.connected, timeout=15, what="publisher saw the broker go")
        assert metric("facerec_mqtt_connected") == 0
        during = record_during_outage(commit, publisher, 5)

        broker.start()  # the same port
        wait_for(lambda: publisher.connected, timeout=20, what="publisher reconnected")
        assert metric("facerec_mqtt_connected") == 1
        after = record(commit, track_id=200).uid
        received = uids_received(subscriber, [*during, after])
    finally:
        subscriber.close()
    assert received == [*map(str, during), str(after)], "every event, once, in the order recorded"
    wait_for(lambda: not publisher.queued() and not publisher.unacknowledged(), timeout=10, what="acknowledged")
    assert publisher.dropped == 0


def test_a_broker_that_was_never_up_gets_the_events_once_it_starts(broker, prefix, db, commit):
    broker.start()  # only so that the subscriber's session exists when the broker comes back
    durable_subscriber(broker, prefix).close()  # disconnected: its session stays, saved at shutdown
    broker.stop()

    publisher = mqtt.publisher_for_tests(host="127.0.0.1", port=broker.port, prefix=prefix)
    during = record_during_outage(commit, publisher, 3)
    assert metric("facerec_mqtt_connected") == 0

    broker.start()
    subscriber = durable_subscriber(broker, prefix)
    try:
        wait_for(lambda: publisher.connected, timeout=20, what="publisher connected")
        received = uids_received(subscriber, during)
    finally:
        subscriber.close()
    assert received == [str(uid) for uid in during]


def test_a_full_queue_drops_its_oldest_messages(prefix, db, commit):
    nowhere = free_port()  # nothing listens there
    publisher = mqtt.publisher_for_tests(host="127.0.0.1", port=nowhere, prefix=prefix, queue_max=3)
    dropped_before = metric("facerec_mqtt_messages_total", outcome="dropped")
    try:
        # Browser-stream events: one message each (no camera topic).
        uids = [record(commit, source="browser", source_name="browser:ann", track_id=n).uid for n in range(5)]
        kept = [json.loads(m.payload)["uid"] for m in publisher.queued()]
    finally:
        mqtt.stop(timeout=0.5)
    assert kept == [str(uid) for uid in uids[2:]], "the newest three are kept"
    assert publisher.dropped == 2
    assert metric("facerec_mqtt_messages_total", outcome="dropped") - dropped_before == 2
    assert Event.objects.count() == 5
