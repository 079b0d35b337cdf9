"""The service's Prometheus metrics, defined once; every process records into them.

Under gunicorn (several processes) prometheus_client's multiprocess mode is used: the environment
variable PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is first imported (see
gunicorn.conf.py and the Makefile), and /metrics aggregates every process's files."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
MQTT_CONNECTED = Gauge(
    "facerec_mqtt_connected", "1 while this process is connected to the MQTT broker.",
    multiprocess_mode="livemax")
