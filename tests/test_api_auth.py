"""Tokens, both Authorization keywords, and who may do what (anonymous / user / staff)."""

import pytest

from conftest import MISC, make_client, upload


def test_token_endpoint_returns_the_users_token(user, anon_client):
    response = anon_client.post("/api/auth/token/", {"username": "reader", "password": "reader-pass-123"},
                                format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert len(token) == 40
    for keyword in ("Bearer", "Token"):
        client = make_client()
        client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token}")
        assert client.get("/api/people/").status_code == 200


@pytest.mark.parametrize("payload", [
    {"username": "reader", "password": "wrong"},
    {"username": "nobody", "password": "reader-pass-123"},
    {"username": "reader"},
    {},
])
def test_token_endpoint_refuses_bad_credentials(user, anon_client, payload):
    response = anon_client.post("/api/auth/token/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["error"]["code"] in ("invalid_credentials", "invalid")


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Token", "Bearer a b", "Basic abc"])
def test_bad_authorization_headers_are_401(db, header):
    client = make_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/people/")
    assert response.status_code == 401
    assert response.json()["success"] is False


@pytest.fixture
def person(db):
    from people.services import person_create

    return person_create(name="Someone")


@pytest.fixture
def gallery(db):
    from people.services import gallery_create

    return gallery_create(name="Door", slug="door")


READS = [
    ("get", "/api/people/", None),
    ("get", "/api/people/{person}/", None),
    ("get", "/api/people/{person}/faces/", None),
    ("get", "/api/galleries/", None),
    ("get", "/api/galleries/{gallery}/", None),
    ("get", "/api/stats/", None),
]
WRITES = [
    ("post", "/api/people/", {"name": "New"}),
    ("patch", "/api/people/{person}/", {"name": "Renamed"}),
    ("delete", "/api/people/{person}/", None),
    ("post", "/api/galleries/", {"name": "G", "slug": "g"}),
    ("patch", "/api/galleries/{gallery}/", {"name": "Renamed"}),
    ("delete", "/api/galleries/{gallery}/", None),
    ("post", "/api/faces/cache/", {"action": "clear"}),
    ("post", "/api/faces/encodings/", {"scope": []}),
]


def _call(client, method, path, data, person, gallery):
    url = path.format(person=person.pk, gallery=gallery.pk)
    return getattr(client, method)(url, data, format="json") if data is not None else getattr(client, method)(url)


@pytest.mark.parametrize("method,path,data", READS)
def test_reads_need_a_user(method, path, data, person, gallery, anon_client, user_client, staff_client):
    assert _call(anon_client, method, path, data, person, gallery).status_code == 401
    assert _call(user_client, method, path, data, person, gallery).status_code == 200
    assert _call(staff_client, method, path, data, person, gallery).status_code == 200


@pytest.mark.parametrize("method,path,data", WRITES)
def test_writes_need_staff(method, path, data, person, gallery, anon_client, user_client, staff_client):
    assert _call(anon_client, method, path, data, person, gallery).status_code == 401
    forbidden = _call(user_client, method, path, data, person, gallery)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"
    allowed = _call(staff_client, method, path, data, person, gallery)
    # An empty encodings scope is refused as invalid, but only after staff passed the permission.
    assert allowed.status_code in (200, 201, 204, 400), allowed.content
    assert allowed.status_code != 400 or path == "/api/faces/encodings/"


def test_enrolment_needs_staff(person, anon_client, user_client, staff_client, engine):
    url = f"/api/people/{person.pk}/faces/"
    assert anon_client.post(url, {"image": upload(MISC / "obama_small.jpg")}).status_code == 401
    assert user_client.post(url, {"image": upload(MISC / "obama_small.jpg")}).status_code == 403
    assert staff_client.post(url, {"image": upload(MISC / "obama_small.jpg")}).status_code == 201


@pytest.mark.parametrize("path,field", [
    ("/api/faces/recognize/", "image"),
    ("/api/faces/batch-recognize/", "images"),
])
def test_recognition_needs_any_user(db, engine, anon_client, user_client, path, field):
    assert anon_client.post(path, {field: upload(MISC / "obama_small.jpg")}).status_code == 401
    assert user_client.post(path, {field: upload(MISC / "obama_small.jpg")}).status_code == 200


def test_verify_needs_any_user(db, engine, anon_client, user_client):
    data = {"image_a": upload(MISC / "obama_small.jpg"), "image_b": upload(MISC / "obama_small.jpg")}
    assert anon_client.post("/api/faces/verify/", data).status_code == 401
    data = {"image_a": upload(MISC / "obama_small.jpg"), "image_b": upload(MISC / "obama_small.jpg")}
    response = user_client.post("/api/faces/verify/", data)
    assert response.status_code == 200 and response.json()["distance"] == 0.0


def test_jobs_and_face_writes_need_staff(person, user_client, staff_client, engine):
    from jobs.services import batch_generate_encodings

    job = batch_generate_encodings([])
    assert user_client.get(f"/api/jobs/{job.pk}/").status_code == 403
    assert staff_client.get(f"/api/jobs/{job.pk}/").status_code == 200
    created = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": upload(MISC / "obama_small.jpg")})
    face_id = created.json()["id"]
    assert user_client.get(f"/api/faces/{face_id}/").status_code == 200
    assert user_client.delete(f"/api/faces/{face_id}/").status_code == 403
    assert staff_client.delete(f"/api/faces/{face_id}/").status_code == 204


def test_health_is_public(db, anon_client):
    response = anon_client.get("/api/health/")
    assert response.status_code == 200
    assert response.json()["database"] is True and response.json()["cache"] is True


def test_throttling_answers_429_in_the_error_shape(user_client, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import UserRateThrottle

    cache.clear()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "3/minute"})
    codes = [user_client.get("/api/people/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    body = user_client.get("/api/people/").json()
    assert body["success"] is False and body["error"]["code"] == "throttled"
    cache.clear()
