"""HTTP-level abuse, each class answered by a clear 4xx in the error shape, never a 500: numeric
parameters at their edges, ids that are no ids, hostile JSON and forms, NUL and lone surrogates,
repeated fields, malformed multipart, Django's HTML pages under /api/; then, against real servers
(uvicorn as `make run` starts it, gunicorn's uvicorn workers as `make serve` does), bodies over the
limit, oversized request lines and headers, and a body trickled byte by byte."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conftest import MISC

REAL = (MISC / "obama_small.jpg").read_bytes()
HUGE_ID = "99999999999999999999999"
OVER_INT64 = str(2**63)


def _file(data: bytes = REAL, name: str = "a.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


@pytest.fixture
def client(staff):
    """Staff, with exceptions turned into answers as a real server does (a 500 shows as a 500)."""
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=staff)
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token.key}")


@pytest.fixture
def person(db):
    from people.services import person_create

    return person_create(name="Target")


def refused(response, status: int = 400, code: str = "invalid") -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


# ---- numbers and ids ------------------------------------------------------------------------------

BAD_THRESHOLDS = ["0", "0.0", "-0", "-1e-300", "-1", "2.0000001", "1e309", "nan", "inf", "-inf", "abc", "٠٫٥",
                  "9" * 2000]


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_a_threshold_outside_0_to_2_is_refused(client, person, value):
    for path, data in (("/api/faces/recognize/", {"image": _file()}),
                       ("/api/faces/verify/", {"image": _file(), "person_id": person.pk})):
        error = refused(client.post(path, {**data, "threshold": value}))
        assert "threshold" in error["details"]


def test_the_confidence_never_divides_by_zero():
    from core.errors import ServiceError
    from recognition.services import checked_threshold, safe_confidence

    assert safe_confidence(0.3, 0.0) == 0.0 and safe_confidence(0.0, 0.0) == 1.0
    assert safe_confidence(float("inf"), 0.6) == 0.0
    assert safe_confidence(0.6, 0.6) == 0.5
    for bad in (0, -0.0, float("nan"), float("inf"), 2.5):
        with pytest.raises(ServiceError):
            checked_threshold(bad)


def test_tiny_and_largest_thresholds_answer(client, engine, person):
    from people.services import face_enroll

    face_enroll(person=person, uploads=[_file((MISC / "obama.jpg").read_bytes())])
    tiny = client.post("/api/faces/verify/", {"image": _file(), "person_id": person.pk, "threshold": "1e-300"})
    assert tiny.status_code == 200 and tiny.json()["is_match"] is False and tiny.json()["confidence"] == 0.0
    loose = client.post("/api/faces/recognize/", {"image": _file(), "threshold": "2"})
    assert loose.status_code == 200 and loose.json()["top_match"]["person_id"] == person.pk


@pytest.mark.parametrize("value", ["0", "-1", "101", "1e3", "²", HUGE_ID, "9" * 5000])
def test_match_count_outside_1_to_100_is_refused(client, value):
    assert "match_count" in refused(client.post("/api/faces/recognize/", {"image": _file(), "match_count": value}))[
        "details"]


@pytest.mark.parametrize("value", ["²", "١", "0", "-1", "1.0", "1e3", OVER_INT64, HUGE_ID, "9" * 5000, "1\x00"])
def test_ids_in_forms_bodies_and_queries_are_ascii_and_within_the_bigint(client, person, value):
    from core.ids import parse_id

    assert parse_id(value) is None
    verify = refused(client.post("/api/faces/verify/", {"image": _file(), "person_id": value}))
    assert "person_id" in verify["details"]
    if "\x00" not in value:  # NUL in a query is refused before (test_nul_in_any_query_parameter)
        assert "person" in refused(client.get("/api/events/", {"person": value}))["details"]
        assert "target_id" in refused(client.get("/api/audit/", {"target_id": value}))["details"]
    for body in ({"name": "w", "url": "https://192.0.2.1/", "people": [value]},
                 {"name": "w", "url": "https://192.0.2.1/", "cameras": [value]}):
        details = refused(client.post("/api/webhooks/", body, content_type="application/json"))["details"]
        assert any(key.startswith(tuple(set(body) - {"name", "url"})) for key in details), details


@pytest.mark.parametrize("scope", [[int(HUGE_ID)], [2**63], [0], [-1], [1] * 10001, [True], [1.5]])
def test_an_encoding_scope_of_no_ids_is_refused(client, scope):
    assert "scope" in refused(client.post("/api/faces/encodings/", {"scope": scope},
                                          content_type="application/json"))["details"]


@pytest.mark.parametrize("path", [f"/api/people/{HUGE_ID}/", f"/api/people/{OVER_INT64}/faces/",
                                  f"/api/faces/{HUGE_ID}/", f"/api/faces/{HUGE_ID}/image/",
                                  f"/api/galleries/{OVER_INT64}/", f"/api/cameras/{HUGE_ID}/",
                                  f"/api/events/{HUGE_ID}/", f"/api/webhooks/{HUGE_ID}/", "/api/people/%C2%B2/",
                                  "/api/people/-1/"])
def test_ids_in_urls_that_cannot_exist_are_404(client, path):
    refused(client.get(path), 404, "not_found")


# ---- JSON bodies ------------------------------------------------------------------------------------

def _post_json(client, raw: str | bytes, content_type: str = "application/json"):
    return client.post("/api/people/", raw, content_type=content_type)


HOSTILE_JSON = {
    "deep array": ("[" * 100_000 + "]" * 100_000, "invalid", "nested deeper"),
    "deep object, under the parser's recursion": ('{"name": "x", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 41,
                                                  "invalid", "nested deeper"),
    "lone surrogate in a value": ('{"name": "x", "metadata": {"k": "\\ud800"}}', "invalid", "surrogate"),
    "lone low surrogate in a key": ('{"name": "x", "metadata": {"\\udfff": 1}}', "invalid", "surrogate"),
    "NUL in a key": ('{"name": "x", "metadata": {"a\\u0000": 1}}', "invalid", "NUL"),
    "NUL deep in a list": ('{"name": "x", "metadata": {"k": [1, ["\\u0000"]]}}', "invalid", "NUL"),
    "NUL in the name": ('{"name": "a\\u0000b"}', "invalid", "NUL"),
    "repeated key": ('{"name": "x", "name": "y"}', "parse_error", "repeated"),
    "NaN": ('{"name": "x", "metadata": {"n": NaN}}', "parse_error", "NaN"),
    "infinite number": ('{"name": "x", "metadata": {"n": 1e999}}', "invalid", "finite"),
    "integer of 5000 digits": ('{"name": "x", "metadata": {"n": ' + "9" * 5000 + "}}", "parse_error", "JSON"),
    "not JSON": ('{"name": ', "parse_error", "JSON"),
    "not UTF-8": (b'{"name": "\xff\xfe"}', "parse_error", "utf-8"),
    "UTF-8 of a surrogate": (b'{"name": "\xed\xa0\x80"}', "parse_error", "utf-8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_hostile_json_is_refused_and_nothing_is_stored(client, case):
    from people.models import Person

    raw, code, words = HOSTILE_JSON[case]
    error = refused(_post_json(client, raw), 400, code)
    assert words.lower() in error["message"].lower(), error
    assert not Person.objects.exists()


def test_a_json_body_over_its_bound_is_413(client, settings):
    settings.MAX_JSON_BODY_BYTES = 1000
    refused(_post_json(client, json.dumps({"name": "x", "metadata": {"k": "y" * 2000}})), 413, "request_too_large")
    assert _post_json(client, json.dumps({"name": "x", "metadata": {"k": "y" * 900}})).status_code == 201


@pytest.mark.parametrize("metadata", ['{"a": "\\u0000"}', '{"\\ud800": 1}', "[" * 5000 + "]" * 5000,
                                      '{"a": 1, "a": 2}', "{" * 3])
def test_json_in_a_form_field_is_checked_as_a_body_is(client, metadata):
    from people.models import Person

    error = refused(client.post("/api/people/", {"name": "x", "metadata": metadata}))
    assert "metadata" in error["details"]
    assert not Person.objects.exists()


def test_rows_stored_with_a_lone_surrogate_still_list(client):
    """Stored before input was checked: the list answers, the character \\u-escaped."""
    from django.db import connection

    from people.models import Person

    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's UTF-8 cannot hold a lone surrogate: such rows exist only in SQLite")
    Person.objects.create(name="legacy", metadata={"note": "bad \ud800 text"})
    response = client.get("/api/people/")
    assert response.status_code == 200
    assert b"\\ud800" in response.content
    assert response.json()["results"][0]["metadata"]["note"] == "bad \ud800 text"


# ---- strings, queries and forms ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/people/?search=a%00b", "/api/galleries/?search=%00", "/api/audit/?actor=%00",
                                  "/api/people/1/faces/?status=%00", "/api/events/?since=%00",
                                  "/api/people/?a%00=1", "/live/?x=%00"])
def test_nul_in_any_query_parameter_is_refused(client, path):
    refused(client.get(path))


def test_very_long_strings_are_refused_by_their_bounds(client):
    for field in ("name", "external_id"):
        assert field in refused(_post_json(client, json.dumps({"name": "x", field: "y" * 100_000})))["details"]
    for path, parameter in (("/api/cameras/", "search"), ("/api/events/", "camera"), ("/api/audit/", "actor"),
                            ("/api/attendance/", "tz")):
        response = client.get(path, {parameter: "z" * 10_000, "gallery": "g"})
        assert parameter in refused(response)["details"], path


@pytest.mark.parametrize("path, data, name", [
    ("/api/faces/recognize/", {"image": _file(), "threshold": ["0.5", "0.7"]}, "threshold"),
    ("/api/faces/recognize/", {"image": [_file(), _file()]}, "image"),
    ("/api/faces/verify/", {"image": _file(), "person_id": ["1", "2"]}, "person_id"),
    ("/api/people/", {"name": ["a", "b"]}, "name"),
    ("/api/people/", {"name": "a", "metadata": ["{}", "{}"]}, "metadata"),
])
def test_a_field_sent_twice_is_refused(client, path, data, name):
    for value in data.values():
        for upload in value if isinstance(value, list) else [value]:
            if hasattr(upload, "seek"):
                upload.seek(0)
    assert name in refused(client.post(path, data))["details"]


def test_a_query_parameter_sent_twice_is_refused(client):
    assert "person" in refused(client.get("/api/events/?person=1&person=2"))["details"]
    assert "tz" in refused(client.get("/api/attendance/?gallery=g&tz=UTC&tz=UTC"))["details"]


def test_list_fields_still_take_many_values(client, engine):
    body = client.post("/api/faces/batch-recognize/", {"images": [_file(b""), _file(REAL)]}).json()
    assert body["total_images"] == 2 and body["processed"] == 1


# ---- multipart and content types --------------------------------------------------------------------

def _multipart(parts: list[bytes], boundary: bytes = b"b0undary", end: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if end else b"")


def _field(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


def _filepart(name: bytes, data: bytes = REAL) -> bytes:
    return (b'Content-Disposition: form-data; name="' + name + b'"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + data)


MULTIPART = "multipart/form-data; boundary=b0undary"


@pytest.mark.parametrize("case, body, content_type, status, code", [
    ("no boundary", _multipart([_filepart(b"image")]), "multipart/form-data", 400, "parse_error"),
    ("empty boundary", _multipart([_filepart(b"image")]), "multipart/form-data; boundary=", 400, "parse_error"),
    ("unterminated", _multipart([_filepart(b"image")], end=False)[:-40], MULTIPART, 400, "invalid"),
    ("no parts", b"--b0undary--\r\n", MULTIPART, 400, "invalid"),
    ("garbage", b"\x00\xff" * 5000, MULTIPART, 400, "parse_error"),
    ("huge field name", _multipart([_field(b"n" * 100_000, b"1"), _filepart(b"image")]), MULTIPART, 400,
     "parse_error"),
    ("thousands of fields", _multipart([_field(b"f%d" % i, b"1") for i in range(1500)]), MULTIPART, 400,
     "parse_error"),
    ("hundreds of files", _multipart([_filepart(b"f%d" % i, b"x") for i in range(150)]), MULTIPART, 400,
     "parse_error"),
    ("JSON to a multipart endpoint", b'{"image": "x"}', "application/json", 415, "unsupported_media_type"),
    ("XML", b"<image/>", "application/xml", 415, "unsupported_media_type"),
    ("no content type", b"image=x", "", 415, "unsupported_media_type"),
])
def test_malformed_multipart_and_wrong_content_types(client, case, body, content_type, status, code):
    refused(client.post("/api/faces/recognize/", body, content_type=content_type), status, code)


def test_a_json_only_endpoint_refuses_forms(client):
    refused(client.post("/api/faces/encodings/", {"scope": "all"}), 415, "unsupported_media_type")


def test_form_data_over_the_memory_bound_is_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = _multipart([_field(b"name", b"x" * 20_000)])
    refused(client.post("/api/people/", body, content_type=MULTIPART), 413, "request_too_large")


# ---- /api/ answers JSON whatever DEBUG is --------------------------------------------------------------

@pytest.mark.parametrize("debug", [True, False])
def test_api_errors_are_json_with_debug_on_or_off(client, settings, monkeypatch, caplog, debug):
    settings.DEBUG = debug
    refused(client.get("/api/no-such-thing/"), 404, "not_found")
    error = refused(client.post("/api/people", {"name": "x"}), 404, "not_found")  # no trailing slash
    assert "/api/people/" in error["message"]

    from people import selectors

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "gallery_list", broken)
    with caplog.at_level(logging.ERROR):
        refused(client.get("/api/galleries/"), 500, "server_error")
    logged = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
    assert logged, "the 500 is logged with its traceback"
    assert b"a bug" not in client.get("/api/galleries/").content  # nothing of it reaches the client


def test_html_pages_keep_django_s_pages(client, settings):
    settings.DEBUG = True
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_browser_asking_for_html_gets_the_json_error(client):
    response = client.post("/api/people/", {"name": ""}, HTTP_ACCEPT="text/html")
    assert refused(response)["details"]["name"]


# ---- real servers: the transport ---------------------------------------------------------------------

def _raw(port: int, head: bytes, *, trickle: int = 0, interval: float = 0.5,
         timeout: float = 60) -> tuple[int, bytes, int]:
    """Send ``head`` (and, with ``trickle``, up to that many body bytes, one per ``interval`` s, until
    the server answers); returns (status, the whole answer, body bytes sent). The server must close
    the connection: a read that times out fails the test."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        while sent < trickle and not select.select([sock], [], [], interval)[0]:
            sock.sendall(b"x")
            sent += 1
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer, sent


def _head(port: int, path: str = "/api/people/", *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _check_transport_limits(port: int, body_limit: int) -> None:
    status, answer, _ = _raw(port, _head(port, "/api/people/", f"Content-Length: {body_limit + 1}",
                                         "Content-Type: application/json"))
    assert status == 413 and b"request_too_large" in answer  # answered before a byte of the body was sent
    chunked = _head(port, "/api/people/", "Transfer-Encoding: chunked", "Content-Type: application/json")
    status, answer, _ = _raw(port, chunked + b"%x\r\n" % (body_limit + 1) + b"x" * (body_limit + 1) + b"\r\n")
    assert status == 413 and b"request_too_large" in answer  # counted as it arrived: no Content-Length
    status, answer, _ = _raw(port, _head(port, "/api/people/?q=" + "a" * 9000, "Content-Length: 0"))
    assert status == 414 and b"uri_too_long" in answer
    many = [f"X-Filler-{i}: 1" for i in range(150)]
    status, answer, _ = _raw(port, _head(port, "/api/people/", "Content-Length: 0", *many))
    assert status == 431 and b"headers_too_large" in answer
    status, answer, _ = _raw(port, _head(port, "/api/people/", "Content-Length: 0", "X-Big: " + "b" * 9000))
    assert status == 431 and b"headers_too_large" in answer


def _check_a_trickle_gets_408_while_others_are_served(port: int, base: str) -> None:
    outcome: dict = {}

    def trickle():
        head = _head(port, "/api/people/", "Content-Length: 1000", "Content-Type: application/json")
        outcome["status"], outcome["answer"], outcome["sent"] = _raw(port, head, trickle=1000)

    slow = threading.Thread(target=trickle)
    slow.start()
    served = [requests.get(f"{base}/api/health/", timeout=30).status_code for _ in range(3)]
    meanwhile = slow.is_alive()  # the trickle lasts REQUEST_BODY_TIMEOUT (5 s) at least
    slow.join(timeout=120)
    assert not slow.is_alive(), "the trickling client was never answered"
    assert served == [200, 200, 200] and meanwhile, (served, meanwhile, outcome)
    assert outcome["status"] == 408 and b"request_timeout" in outcome["answer"], outcome
    assert b"connection: close" in outcome["answer"].lower()
    assert 2 <= outcome["sent"] < 1000  # it was trickling, and was cut off long before the end


BODY_LIMIT = 50_000


@pytest.mark.django_db(transaction=True)
def test_uvicorn_bounds_bodies_lines_headers_and_time(settings, tmp_path):
    from tests.live_server import LiveServer

    server = LiveServer(settings, tmp_path, REQUEST_BODY_TIMEOUT="5", REQUEST_MAX_BODY_BYTES=str(BODY_LIMIT))
    try:
        server.wait_ready()
        _check_transport_limits(server.port, BODY_LIMIT)
        _check_a_trickle_gets_408_while_others_are_served(server.port, server.base)
        assert server.alive()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_s_uvicorn_workers_bound_them_too(settings, tmp_path):
    from tests.processes import ApiServer, service_env

    env = service_env(settings, REQUEST_BODY_TIMEOUT="5", REQUEST_MAX_BODY_BYTES=str(BODY_LIMIT))
    server = ApiServer("gunicorn", env, tmp_path)
    try:
        server.wait_ready()
        _check_transport_limits(server.port, BODY_LIMIT)
        _check_a_trickle_gets_408_while_others_are_served(server.port, server.base)
        assert server.alive() and server.workers_booted() == 1  # no worker was lost
    finally:
        server.stop()
