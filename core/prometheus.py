"""The service's Prometheus metrics, defined once; every process records into them.

Under gunicorn (several processes) prometheus_client's multiprocess mode is used: the environment
variable PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is first imported (see
gunicorn.conf.py and the Makefile), and /metrics aggregates every process's files. The exposition,
its access rules and the values read from the database at scrape time are in core/exposition.py."""

from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

logger = logging.getLogger(__name__)

# Seconds, from a millisecond (one engine stage on a small batch) to a minute (a batch upload).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

STAGE_SECONDS = Histogram(
    "facerec_stage_seconds", "Time spent in one recognition stage (decode, detect, landmarks, embed, match…).",
    ["stage"], buckets=_LATENCY_BUCKETS)
HTTP_REQUESTS = Counter(
    "facerec_http_requests_total", "HTTP requests answered, by endpoint (the URL route), method and status.",
    ["endpoint", "method", "status"])
HTTP_SECONDS = Histogram(
    "facerec_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint.",
    ["endpoint"], buckets=_LATENCY_BUCKETS)
CAMERA_FRAMES = Counter(
    "facerec_camera_frames_total", "Camera frames by state: received (read from the source), analysed, "
    "dropped (replaced by a newer frame before analysis).", ["camera", "state"])
EVENTS = Counter(
    "facerec_events_total", "Appearances whose name was decided, by kind (known/unknown) and source "
    "(camera/browser).", ["kind", "source"])
TIME_TO_NAME = Histogram(
    "facerec_time_to_name_seconds", "From a face's first frame to its name's decision.", ["source"],
    buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0))
WEBHOOK_DELIVERIES = Counter(
    "facerec_webhook_attempts_total", "Webhook delivery attempts by outcome: delivered (2xx), failed (will "
    "be retried), abandoned (the last attempt failed), refused (the URL is not allowed).", ["outcome"])
WEBHOOK_SECONDS = Histogram(
    "facerec_webhook_attempt_seconds", "Duration of one webhook delivery attempt.", buckets=_LATENCY_BUCKETS)
WEBHOOK_DELAY = Histogram(
    "facerec_webhook_delay_seconds", "From an event's decision to its webhook's delivery (2xx).",
    buckets=_LATENCY_BUCKETS)
MQTT_MESSAGES = Counter(
    "facerec_mqtt_messages_total", "MQTT messages by outcome: published (acknowledged by the broker), failed, "
    "dropped (the queue was full while the broker was away).", ["outcome"])
# Serving (core/serving/): requests refused as overloaded, the engine's batches, the waits.
SERVING_REFUSALS = Counter(
    "facerec_serving_refusals_total", "Requests answered 503 overloaded, by queue and reason: queue_full (the "
    "queue's bound), max_wait (the estimated or actual wait over the limit).", ["queue", "reason"])
SERVING_BATCH_IMAGES = Histogram(
    "facerec_serving_batch_images", "Images per engine call made for requests (the images of concurrent "
    "requests gathered).", ["queue"], buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128))
SERVING_QUEUE_SECONDS = Histogram(
    "facerec_serving_queue_wait_seconds", "From a request's arrival in the engine's queue to the start of "
    "its batch.", ["queue"], buckets=_LATENCY_BUCKETS)
SERVING_LANE_SECONDS = Histogram(
    "facerec_serving_lane_wait_seconds", "From a request's arrival to a thread of its lane (light or engine) "
    "taking it.", ["lane"], buckets=_LATENCY_BUCKETS)
MQTT_CONNECTED = Gauge(
    "facerec_mqtt_connected", "1 while this process is connected to the MQTT broker.",
    multiprocess_mode="livemax")


def process_registry() -> CollectorRegistry:
    """What this process exposes: under multiprocess mode every process's files summed (a fresh
    registry each time, as prometheus_client requires), otherwise this process's own registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class CameraFrames:
    """Turns one camera stream's cumulative frame counts (as its status reports them) into
    increments of CAMERA_FRAMES. A count lower than the last one means the stream started again
    from 0: all of it is new."""

    _STATES = {"frames_in": "received", "frames_analysed": "analysed", "frames_dropped": "dropped"}

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._last = dict.fromkeys(self._STATES, 0)

    def record(self, status: dict) -> None:
        for key, state in self._STATES.items():
            total = status.get(key)
            if total is None:  # no source (a bad URL): nothing was read
                continue
            delta = total - self._last[key] if total >= self._last[key] else total
            if delta:
                CAMERA_FRAMES.labels(camera=self.camera, state=state).inc(delta)
            self._last[key] = total


def record_event(sender, *, event, phase: str, **kwargs) -> None:
    """Receiver of events.hooks.event_recorded (connected in CoreConfig.ready): an appearance
    counts once, when its name was decided."""
    if phase != "opened":
        return
    try:
        EVENTS.labels(kind=event.kind, source=event.source).inc()
        TIME_TO_NAME.labels(source=event.source).observe(max(event.time_to_name_ms, 0.0) / 1000.0)
    except Exception:  # noqa: BLE001 - metrics must never break the writer of events
        logger.exception("event %s: not counted in the metrics", getattr(event, "uid", "?"))
