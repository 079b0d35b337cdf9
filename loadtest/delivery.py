"""Benchmark of what live recognition feeds: events per second through MQTT and webhooks, and the
delay from an event's decision to its delivery (p50/p95), on a throw-away test database.

    .venv/bin/python loadtest/delivery.py [--events 300] [--rate 20] [--mqtt-host 127.0.0.1]

Events are written as a camera worker writes them (events.services.event_upsert, with named_at =
the moment of the write); the service's own consumers (events.mqtt, webhooks) deliver them to a
paho subscriber of the broker and to an HTTP receiver on loopback, which note when each arrives.
Three phases on the same events:
  1. writes alone (no MQTT, no subscription): the cost of writing an event, the reference;
  2. a burst (every event written at once): throughput, events/s end to end per channel;
  3. paced at --rate events/s: the delay from decision to delivery, p50/p95/max per channel.
DATABASE_URL picks PostgreSQL (Django creates and drops test_<name>); SQLite otherwise."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")


class Arrivals:
    """When each event uid arrived on one channel (first arrival only)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, float] = {}

    def note(self, uid: str) -> None:
        now = time.time()
        with self.lock:
            self.at.setdefault(uid, now)

    def wait_for(self, uids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(u in self.at for u in uids):
                    return True
            time.sleep(0.02)
        return False


def start_receiver(arrivals: Arrivals, secret_box: dict) -> ThreadingHTTPServer:
    from webhooks.signing import verify_signature

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ok = verify_signature(secret_box["secret"], self.headers.get("X-Facerec-Signature", ""), body)
            if ok:
                arrivals.note(json.loads(body)["uid"])
            self.send_response(204 if ok else 400)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_subscriber(host: str, port: int, topic: str, arrivals: Arrivals):
    import paho.mqtt.client as mqtt

    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, qos=1), ready.set())
    client.on_message = lambda c, u, m: arrivals.note(json.loads(m.payload)["uid"])
    client.connect(host, port)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit(f"no MQTT broker answering on {host}:{port}")
    time.sleep(0.3)  # the SUBACK
    return client


def write_events(count: int, *, rate: float | None) -> tuple[list[str], dict[str, float], list[float]]:
    """Write ``count`` opened events (at ``rate`` per second, or at once); their uids, decision times
    (epoch seconds) and write durations (ms)."""
    from events.services import event_upsert
    from people.models import Person

    person = Person.objects.get(name="Bench Person")
    uids, decided, durations = [], {}, []
    start = time.monotonic()
    for n in range(count):
        if rate:
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        uid = uuid.uuid4()
        now = datetime.now(UTC)
        clock = time.perf_counter()
        event_upsert(
            uid=uid, source="camera", camera_id=None, source_name="bench door", user_id=None, gallery_id=None,
            track_id=n, kind="known", person_id=person.pk, distance=0.4, confidence=0.7, threshold=0.6,
            first_seen=now, named_at=now, last_seen=now, closed_at=None, frames_seen=3, frames_recognised=3,
            face_box={"top": 0, "right": 100, "bottom": 100, "left": 0}, face_size=100, sharpness=50.0,
            embedding=None, crop_jpeg=None,
        )
        durations.append((time.perf_counter() - clock) * 1000.0)
        uids.append(str(uid))
        decided[str(uid)] = now.timestamp()
    return uids, decided, durations


def percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, round(q * (len(ranked) - 1)))]


def report(name: str, uids: list[str], decided: dict[str, float], arrivals: Arrivals) -> dict:
    delays = [(arrivals.at[u] - decided[u]) * 1000.0 for u in uids if u in arrivals.at]
    got = len(delays)
    first = min(decided[u] for u in uids)
    last = max((arrivals.at[u] for u in uids if u in arrivals.at), default=first)
    rate = got / (last - first) if last > first else 0.0
    row = {"channel": name, "delivered": got, "events": len(uids), "events_per_s": rate,
           "p50_ms": statistics.median(delays) if delays else float("nan"),
           "p95_ms": percentile(delays, 0.95) if delays else float("nan"), "max_ms": max(delays, default=float("nan"))}
    print(f"  {name:<9} {got:>5}/{len(uids):<5} delivered  {rate:8.1f} events/s  delay p50 {row['p50_ms']:7.1f} ms"
          f"  p95 {row['p95_ms']:7.1f} ms  max {row['max_ms']:7.1f} ms")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300, help="events per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second in the paced phase")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every delivery")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from events import mqtt
    from people.models import Person
    from webhooks import backends
    from webhooks.services import subscription_create

    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="facerec-bench-media-")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    database = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    try:
        Person.objects.create(name="Bench Person")
        print(f"Delivery benchmark: {args.events} events per phase, database {database}, "
              f"webhooks {'Celery' if backends.uses_celery() else 'in-process'} ({settings.WEBHOOK_WORKERS} threads), "
              f"MQTT {args.mqtt_host}:{args.mqtt_port} QoS {settings.MQTT_QOS}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")

        settings.MQTT_HOST = ""
        _, _, alone = write_events(args.events, rate=None)
        print(f"1. writes alone: event_upsert p50 {statistics.median(alone):.2f} ms, "
              f"p95 {percentile(alone, 0.95):.2f} ms")

        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_TOPIC_PREFIX = args.mqtt_host, args.mqtt_port, prefix
        settings.WEBHOOK_ALLOW_PRIVATE = True
        mqtt_arrivals, hook_arrivals, secret = Arrivals(), Arrivals(), {}
        receiver = start_receiver(hook_arrivals, secret)
        subscriber = start_subscriber(args.mqtt_host, args.mqtt_port, f"{prefix}/events", mqtt_arrivals)
        subscription = subscription_create(name="bench", url=f"http://127.0.0.1:{receiver.server_port}/hook",
                                           kinds=["known", "unknown"], phases=["opened"])
        secret["secret"] = subscription.secret
        time.sleep(3)  # the per-process subscription cache picks the new subscription up

        for label, rate in (("2. burst", None), (f"3. paced at {args.rate:g}/s", args.rate)):
            uids, decided, durations = write_events(args.events, rate=rate)
            both = mqtt_arrivals.wait_for(uids, args.timeout) and hook_arrivals.wait_for(uids, args.timeout)
            print(f"{label}: event_upsert with both consumers p50 {statistics.median(durations):.2f} ms, "
                  f"p95 {percentile(durations, 0.95):.2f} ms{'' if both else '  (NOT ALL DELIVERED)'}")
            report("MQTT", uids, decided, mqtt_arrivals)
            report("webhooks", uids, decided, hook_arrivals)
        subscriber.loop_stop()
        receiver.shutdown()
        mqtt.stop()
        backends.wait_idle(timeout=30)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
