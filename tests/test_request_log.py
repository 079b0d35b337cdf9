"""The request log: an id per request (the client's when sane), one JSON line with who, what,
outcome, duration and the engine's stages; every record of a request carries its id."""

import json
import logging
from datetime import datetime

import pytest

from conftest import TEST, upload
from core.logging import JsonFormatter, request_id_var


def request_lines(caplog) -> list[dict]:
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "core.request"]


def test_the_request_id_comes_back(anon_client):
    response = anon_client.get("/api/health/", HTTP_X_REQUEST_ID="edge-7f3a.42_b")
    assert response["X-Request-ID"] == "edge-7f3a.42_b"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 129, "quote\"d", "ünï", "a;b=c"])
def test_an_insane_request_id_is_replaced(anon_client, incoming):
    response = anon_client.get("/api/health/", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32 and int(response["X-Request-ID"], 16) >= 0


def test_each_request_gets_its_own_id(anon_client):
    ids = {anon_client.get("/api/health/")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_one_json_line_per_request(user_client, caplog):
    with caplog.at_level(logging.INFO, logger="core.request"):
        response = user_client.get("/api/people/", {"page_size": 5})
    [line] = request_lines(caplog)
    assert response.status_code == 200
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None
    assert line["level"] == "info" and line["logger"] == "core.request"
    assert line["request_id"] == response["X-Request-ID"]
    assert line["user"] == "reader"
    assert (line["method"], line["path"], line["endpoint"], line["status"]) == (
        "GET", "/api/people/", "api/people/", 200)
    assert line["duration_ms"] > 0
    assert "stages_ms" not in line  # no engine stage ran


def test_unknown_and_anonymous_requests_are_logged(anon_client, caplog):
    with caplog.at_level(logging.INFO, logger="core.request"):
        anon_client.get("/api/people/7/")
        anon_client.get("/no/such/page/")
    first, second = request_lines(caplog)
    assert first["user"] is None and first["endpoint"] == "api/people/<int:pk>/" and first["status"] == 401
    assert second["endpoint"] is None and second["status"] == 404


def test_the_engine_stages_of_a_request_are_logged(user_client, engine, caplog, db):
    with caplog.at_level(logging.INFO, logger="core.request"):
        response = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama_and_biden.jpg")},
                                    HTTP_X_REQUEST_ID="recognize-1")
    assert response.status_code == 200
    [line] = request_lines(caplog)
    assert line["request_id"] == "recognize-1" and line["endpoint"] == "api/faces/recognize/"
    timings = response.json()["timings_ms"]
    assert set(line["stages_ms"]) == set(timings)
    assert all(line["stages_ms"][stage] == pytest.approx(ms, abs=1e-3) for stage, ms in timings.items())


def test_djangos_own_records_of_a_request_carry_its_id(user_client, caplog):
    with caplog.at_level(logging.INFO):
        response = user_client.get("/api/people/999999/", HTTP_X_REQUEST_ID="lost-1")
    [not_found] = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "django.request"]
    assert response.status_code == 404 and not_found["request_id"] == "lost-1" and not_found["status_code"] == 404


def test_every_record_of_a_request_carries_its_id():
    record = logging.LogRecord("jobs", logging.ERROR, __file__, 1, "job %s failed", ("j1",), None)
    token = request_id_var.set("abc123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "abc123" and line["message"] == "job j1 failed" and line["level"] == "error"
    assert "request_id" not in json.loads(JsonFormatter().format(record))


def test_exceptions_and_extras_are_kept_in_the_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    record.request = object()  # Django's django.request passes the request itself
    line = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in line["exc_info"] and line["request"].startswith("<object")
