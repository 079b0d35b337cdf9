"""Enrolment: synchronous 201 / 422, duplicates by hash, largest face, several files, async jobs."""

import pytest

from conftest import MISC, TRAIN, upload


@pytest.fixture
def person(db):
    from people.services import person_create

    return person_create(name="Obama")


def _url(person):
    return f"/api/people/{person.pk}/faces/"


def test_enrol_one_photo(staff_client, person, engine):
    response = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama.jpg")})
    assert response.status_code == 201
    face = response.json()
    assert face["status"] == "encoded" and face["has_embedding"] and face["duplicate"] is False
    box = face["box"]
    assert 0 <= box["left"] < box["right"] <= face["image_width"]
    assert 0 <= box["top"] < box["bottom"] <= face["image_height"]
    assert staff_client.get(face["thumbnail"]).status_code == 200

    from people.models import Face

    stored = Face.objects.get(pk=face["id"])
    assert len(bytes(stored.embedding)) == 512  # 128 float32, no pickle
    assert stored.embedding_array().dtype.str == "<f4"
    assert staff_client.get(f"/api/faces/{face['id']}/").json()["sha256"] == stored.sha256


def test_same_bytes_twice_is_a_duplicate_not_a_new_face(staff_client, person, engine):
    first = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama.jpg")}).json()
    again = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama.jpg", name="other.jpg")})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["id"] == first["id"]
    assert person.faces.count() == 1


@pytest.mark.parametrize("photo,code", [
    (MISC / "two_people.jpg", "multiple_faces"),
    (TRAIN / ".." / ".." / "LICENSE", "not_an_image"),
])
def test_refused_photos_keep_nothing(staff_client, person, engine, photo, code):
    response = staff_client.post(_url(person), {"image": upload(photo, name="photo.jpg")})
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code
    assert person.faces.count() == 0


def test_photo_without_a_face_is_422(staff_client, person, engine, tmp_path):
    from PIL import Image

    path = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (120, 160, 200)).save(path)
    response = staff_client.post(_url(person), {"image": upload(path)})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_face"
    assert person.faces.count() == 0


def test_largest_takes_the_largest_face(staff_client, person, engine):
    response = staff_client.post(_url(person), {"image": upload(MISC / "two_people.jpg"), "largest": "true"})
    assert response.status_code == 201
    box = response.json()["box"]
    details = staff_client.post(_url(person), {"image": upload(MISC / "two_people.jpg", name="b.jpg")})
    # The refused twin listed both faces: the enrolled one is the bigger.
    assert details.status_code == 200 and details.json()["duplicate"] is True
    assert (box["right"] - box["left"]) * (box["bottom"] - box["top"]) > 150 * 150


def test_several_files_in_one_request(staff_client, person, engine):
    files = [upload(TRAIN / "obama" / "obama.jpg"), upload(TRAIN / "obama" / "obama2.jpg")]
    response = staff_client.post(_url(person), {"image": files})
    assert response.status_code == 201
    body = response.json()
    assert body["enrolled"] == 2 and body["refused"] == 0
    mixed = staff_client.post(_url(person), {"image": [upload(MISC / "two_people.jpg"),
                                                       upload(MISC / "obama_small.jpg")]})
    assert mixed.status_code == 207
    results = mixed.json()["results"]
    assert results[0]["error"]["code"] == "multiple_faces" and results[1]["face"]["status"] == "encoded"
    refused = staff_client.post(_url(person), {"image": [upload(MISC / "two_people.jpg"),
                                                         upload(MISC / "two_people.jpg", name="b.jpg")]})
    assert refused.status_code == 422
    assert person.faces.count() == 3


def test_enrol_validation(staff_client, person):
    assert staff_client.post(_url(person), {}).json()["error"]["code"] == "invalid"
    assert staff_client.post(_url(person), {"image": "not a file"}).status_code == 400
    response = staff_client.post(_url(person), {"image": upload(MISC / "obama_small.jpg"), "largest": "maybe"})
    assert response.status_code == 400 and "largest" in response.json()["error"]["details"]
    missing = staff_client.post("/api/people/999999/faces/", {"image": upload(MISC / "obama_small.jpg")})
    assert missing.status_code == 404
    json_body = staff_client.post(_url(person), {"image": "x"}, format="json")
    assert json_body.status_code == 415


@pytest.mark.django_db(transaction=True)
def test_async_enrolment_runs_as_a_job(engine):
    from django.contrib.auth import get_user_model

    from conftest import make_client
    from jobs.backends import wait_idle
    from people.services import person_create

    staff = get_user_model().objects.create_user("op", password="x", is_staff=True)
    client = make_client(staff)
    person = person_create(name="Obama")
    response = client.post(_url(person), {"async": "true", "image": [
        upload(TRAIN / "obama" / "obama.jpg"), upload(MISC / "two_people.jpg")]})
    assert response.status_code == 202
    body = response.json()
    assert body["job_id"] and [r["face"]["status"] for r in body["results"]] == ["pending", "pending"]
    wait_idle()
    job = client.get(f"/api/jobs/{body['job_id']}/").json()
    assert job["state"] == "succeeded" and job["progress"] == 1.0
    assert (job["total"], job["processed"], job["encoded"], job["failed"]) == (2, 2, 1, 1)
    assert "faces were found" in job["errors"][0]["message"]
    statuses = sorted(person.faces.values_list("status", flat=True))
    assert statuses == ["encoded", "multiple_faces"]
    recognized = client.post("/api/faces/recognize/", {"image": upload(MISC / "obama_small.jpg")}).json()
    assert recognized["top_match"]["person_name"] == "Obama"


def test_photos_are_served_to_users_only(staff_client, user_client, anon_client, person, engine):
    face = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama.jpg")}).json()
    for field in ("image", "thumbnail"):
        assert anon_client.get(face[field]).status_code == 401
        response = user_client.get(face[field])
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(user_client.get(face["image"]).streaming_content) == (TRAIN / "obama" / "obama.jpg").read_bytes()
    assert user_client.get(face["image"])["Cache-Control"] == "private, no-store"


def test_a_photo_gone_from_storage_is_a_404_not_a_500(staff_client, user_client, person, engine):
    """The row outlives its file (a disk restored without media, a crash between the two deletes)."""
    from people.models import Face

    body = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama.jpg")}).json()
    stored = Face.objects.get(pk=body["id"])
    stored.image.storage.delete(stored.image.name)
    response = user_client.get(body["image"])
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
