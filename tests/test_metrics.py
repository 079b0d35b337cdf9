"""Prometheus /metrics in this process: who may scrape (loopback by default, a token, the networks
setting), and what it shows: requests by route and status, the engine's stages after a real
recognition, events by kind with their time to name, the database's gauges (also when a read
fails), camera frames from cumulative counts. The counters are process-wide and other tests move
them too: each test compares two scrapes."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from conftest import TEST, upload
from core.prometheus import CameraFrames, process_registry

OUTSIDE = "203.0.113.7"  # a documentation address: never in the default networks


def scrape(**extra) -> str:
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    return response.content.decode()


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sample's value (0 when absent: a labelled counter appears only once it moved)."""
    found = [s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, f"{name} {labels}: several samples {found}"
    return found[0] if found else 0.0


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code and body["error"]["message"]


# ---- access -------------------------------------------------------------------------------------

def test_loopback_may_scrape_by_default(db):
    text = scrape()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"facerec_people", "facerec_index_faces", "facerec_jobs", "facerec_cameras",
            "facerec_scrape_errors"} <= names
    assert scrape(REMOTE_ADDR="::1") and scrape(REMOTE_ADDR="::ffff:127.0.0.1")  # IPv6, dual-stack


def test_another_address_is_refused_whatever_it_says_it_forwards(db):
    response = Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1",
                            HTTP_X_REAL_IP="127.0.0.1")
    refused(response, 403, "permission_denied")
    refused(Client().get("/metrics", REMOTE_ADDR=""), 403, "permission_denied")  # a Unix socket: no address


def test_the_token_opens_the_metrics_to_any_address_and_a_wrong_one_is_401(db, settings):
    settings.METRICS_TOKEN = "scrape-" + "x" * 32
    assert scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
    assert scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"bearer  {settings.METRICS_TOKEN}")
    for wrong in ("Bearer scrape-" + "y" * 32, "Bearer", f"Token {settings.METRICS_TOKEN}", "Basic c2NyYXBl"):
        response = Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=wrong)
        refused(response, 401, "authentication_failed")
        assert response["WWW-Authenticate"].startswith("Bearer")
    refused(Client().get("/metrics", REMOTE_ADDR=OUTSIDE), 403, "permission_denied")
    assert scrape(HTTP_AUTHORIZATION="Bearer wrong")  # from loopback the address suffices


def test_without_a_token_setting_no_token_opens_the_metrics(db, settings):
    settings.METRICS_TOKEN = ""
    for sent in ("Bearer ", "Bearer  ", "Bearer x"):
        refused(Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=sent), 401, "authentication_failed")


def test_the_networks_setting_says_which_addresses_may_scrape(db, settings, caplog):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32", "no-such-network"]
    with caplog.at_level(logging.ERROR, logger="core.exposition"):
        assert scrape(REMOTE_ADDR="10.20.30.40") and scrape(REMOTE_ADDR="2001:db8::5")
    assert "no-such-network" in caplog.text  # ignored, and said
    for elsewhere in ("127.0.0.1", "11.0.0.1", "::1", "not-an-address"):
        refused(Client().get("/metrics", REMOTE_ADDR=elsewhere), 403, "permission_denied")
    settings.METRICS_ALLOWED_NETWORKS = []  # the token only
    refused(Client().get("/metrics"), 403, "permission_denied")


def test_only_get_and_head(db):
    refused(Client().post("/metrics"), 405, "method_not_allowed")
    assert Client().head("/metrics").status_code == 200


# ---- what it shows ------------------------------------------------------------------------------

def test_requests_are_counted_by_route_method_and_status(db, anon_client):
    before = scrape()
    for _ in range(2):
        assert anon_client.get("/api/people/7/").status_code == 401
    assert anon_client.get("/no/such/page/7/").status_code == 404
    assert anon_client.generic("BREW", "/api/health/").status_code == 405
    after = scrape()
    route = {"endpoint": "api/people/<int:pk>/"}
    assert value(after, "facerec_http_requests_total", **route, method="GET", status="401") - \
        value(before, "facerec_http_requests_total", **route, method="GET", status="401") == 2
    assert value(after, "facerec_http_request_duration_seconds_count", **route) - \
        value(before, "facerec_http_request_duration_seconds_count", **route) == 2
    assert value(after, "facerec_http_requests_total", endpoint="unmatched", method="GET", status="404") - \
        value(before, "facerec_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(after, "facerec_http_requests_total", endpoint="api/health/", method="other", status="405") - \
        value(before, "facerec_http_requests_total", endpoint="api/health/", method="other", status="405") == 1
    # The first scrape is counted like any request (seen by the second); raw paths never become labels.
    assert value(after, "facerec_http_requests_total", endpoint="metrics", method="GET", status="200") >= 1
    http = [s.labels for s in samples(after) if s.name == "facerec_http_requests_total"]
    assert not [labels for labels in http if "/7/" in labels["endpoint"] or labels["method"] == "BREW"]


def test_a_recognition_observes_every_stage_in_seconds(user_client, engine):
    before = scrape()
    response = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama_and_biden.jpg")})
    assert response.status_code == 200
    after = scrape()
    timings = response.json()["timings_ms"]
    assert {"decode", "detect", "embed"} <= set(timings)
    for stage, ms in timings.items():
        count = value(after, "facerec_stage_seconds_count", stage=stage) - \
            value(before, "facerec_stage_seconds_count", stage=stage)
        seconds = value(after, "facerec_stage_seconds_sum", stage=stage) - \
            value(before, "facerec_stage_seconds_sum", stage=stage)
        assert count >= 1 and seconds == pytest.approx(ms / 1000.0, abs=1e-6), stage


def _event(uid: uuid.UUID, **changes):
    from events.services import event_upsert

    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    values = {
        "uid": uid, "source": "camera", "camera_id": None, "source_name": "door", "user_id": None,
        "gallery_id": None, "track_id": 1, "kind": "unknown", "person_id": None, "distance": 0.7,
        "confidence": 0.4, "threshold": 0.6, "first_seen": t0, "named_at": t0 + timedelta(milliseconds=350),
        "last_seen": t0 + timedelta(seconds=2), "closed_at": None, "frames_seen": 10, "frames_recognised": 8,
        "face_box": {"top": 0, "right": 100, "bottom": 100, "left": 0}, "face_size": 100, "sharpness": 30.0,
        "embedding": None, "crop_jpeg": None,
    }
    return event_upsert(**{**values, **changes})


def test_an_opened_event_counts_its_kind_and_time_to_name_once(db, django_capture_on_commit_callbacks):
    uid = uuid.uuid4()
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        _event(uid)
    opened = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        _event(uid, last_seen=datetime(2025, 3, 1, 9, 0, 5, tzinfo=UTC))  # updated
        _event(uid, closed_at=datetime(2025, 3, 1, 9, 0, 6, tzinfo=UTC))  # closed
    after = scrape()
    events = {"kind": "unknown", "source": "camera"}
    assert value(opened, "facerec_events_total", **events) - value(before, "facerec_events_total", **events) == 1
    assert value(opened, "facerec_time_to_name_seconds_count", source="camera") - \
        value(before, "facerec_time_to_name_seconds_count", source="camera") == 1
    assert value(opened, "facerec_time_to_name_seconds_sum", source="camera") - \
        value(before, "facerec_time_to_name_seconds_sum", source="camera") == pytest.approx(0.35)
    assert value(opened, "facerec_time_to_name_seconds_bucket", source="camera", le="0.3") == \
        value(before, "facerec_time_to_name_seconds_bucket", source="camera", le="0.3")  # 0.35 s is above it
    assert value(after, "facerec_events_total", **events) == value(opened, "facerec_events_total", **events)
    assert value(after, "facerec_time_to_name_seconds_count", source="camera") == \
        value(opened, "facerec_time_to_name_seconds_count", source="camera")


def test_the_database_gauges(db):
    from jobs.models import Job
    from people.engine import embedding_model_id
    from people.models import Face, Person
    from streams.models import Camera

    ann, bob = Person.objects.create(name="Ann"), Person.objects.create(name="Bob")
    vector = bytes(512)
    Face.objects.create(person=ann, image="a.jpg", sha256="a", status=Face.Status.ENCODED,
                        embedding=vector, model=embedding_model_id())
    Face.objects.create(person=ann, image="b.jpg", sha256="b", status=Face.Status.ENCODED,
                        embedding=vector, model="an/older-model")  # not in the index until re-encoded
    Face.objects.create(person=bob, image="c.jpg", sha256="c", status=Face.Status.PENDING)
    Job.objects.create(kind=Job.Kind.ENCODE, state=Job.State.RUNNING)
    for state in (Job.State.QUEUED, Job.State.QUEUED, Job.State.SUCCEEDED):
        Job.objects.create(kind=Job.Kind.ENCODE, state=state)
    Camera.objects.create(name="door", source_url="rtsp://127.0.0.1:1/x", state=Camera.State.CONNECTED)
    Camera.objects.create(name="yard", source_url="rtsp://127.0.0.1:1/y")
    text = scrape()
    assert value(text, "facerec_people") == 2 and value(text, "facerec_index_faces") == 1
    assert value(text, "facerec_jobs", state="queued") == 2 and value(text, "facerec_jobs", state="running") == 1
    assert {s.labels["state"]: s.value for s in samples(text) if s.name == "facerec_cameras"} == {
        "stopped": 1, "connecting": 0, "connected": 1, "reconnecting": 0}
    assert value(text, "facerec_scrape_errors") == 0


def test_pending_webhook_deliveries_are_a_gauge(db):
    try:
        from webhooks.models import Delivery, Subscription  # noqa: F401
    except ImportError:
        pytest.skip("the webhooks app has no Delivery model yet")
    assert value(scrape(), "facerec_webhook_deliveries_pending") == 0
    assert "facerec_webhook_deliveries_pending" in {f.name for f in text_string_to_metric_families(scrape())}


def test_a_failed_database_read_leaves_its_gauges_out_not_the_scrape(db, caplog):
    from people.models import Person

    Person.objects.create(name="Ann")
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("DROP TABLE jobs_job")
    with caplog.at_level(logging.WARNING, logger="core.exposition"):
        text = scrape()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "facerec_jobs" not in names and value(text, "facerec_scrape_errors") == 1
    assert value(text, "facerec_people") == 1 and "facerec_cameras" in names  # the other reads still answer
    assert "metrics: jobs not read" in caplog.text


def test_camera_frames_count_what_each_status_adds_and_a_restarted_stream_from_zero():
    camera = f"cam-{uuid.uuid4().hex[:8]}"

    def counted() -> dict[str, float]:
        registry = process_registry()
        return {state: registry.get_sample_value("facerec_camera_frames_total", {"camera": camera, "state": state})
                or 0.0 for state in ("received", "analysed", "dropped")}

    first = CameraFrames(camera)
    first.record({"state": "reconnecting", "last_error": "no answer"})  # no source: nothing counted
    assert counted() == {"received": 0, "analysed": 0, "dropped": 0}
    first.record({"frames_in": 30, "frames_analysed": 5, "frames_dropped": 20})
    first.record({"frames_in": 45, "frames_analysed": 8, "frames_dropped": 30})
    assert counted() == {"received": 45, "analysed": 8, "dropped": 30}
    first.record({"frames_in": 6, "frames_analysed": 1, "frames_dropped": 4})  # its source started again at 0
    assert counted() == {"received": 51, "analysed": 9, "dropped": 34}
    CameraFrames(camera).record({"frames_in": 10, "frames_analysed": 2, "frames_dropped": 7})  # a new runner
    assert counted() == {"received": 61, "analysed": 11, "dropped": 41}
