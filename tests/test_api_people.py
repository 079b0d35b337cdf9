"""People and galleries: CRUD, pagination, search, gallery filter, cascading deletes."""

import os

import pytest

from conftest import MISC, TRAIN, upload


@pytest.fixture
def gallery(staff_client):
    return staff_client.post("/api/galleries/", {"name": "Class A", "slug": "class-a"}, format="json").json()


def test_person_crud(staff_client, gallery):
    created = staff_client.post("/api/people/", {
        "name": "Ada", "external_id": "S-001", "metadata": {"year": 3}, "galleries": ["class-a"],
    }, format="json")
    assert created.status_code == 201
    person = created.json()
    assert person["id"] and person["galleries"] == [gallery["id"]] and person["metadata"] == {"year": 3}

    url = f"/api/people/{person['id']}/"
    assert staff_client.get(url).json()["name"] == "Ada"
    patched = staff_client.patch(url, {"name": "Ada L.", "galleries": []}, format="json").json()
    assert patched["name"] == "Ada L." and patched["galleries"] == [] and patched["external_id"] == "S-001"
    put = staff_client.put(url, {"name": "Ada Lovelace"}, format="json").json()
    assert put["name"] == "Ada Lovelace"
    assert staff_client.delete(url).status_code == 204
    missing = staff_client.get(url)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("payload,field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "A", "metadata": [1, 2]}, "metadata"),
    ({"name": "A", "galleries": ["no-such-gallery"]}, "galleries"),
    ({"name": "A", "galleries": "class-a"}, "galleries"),
])
def test_person_validation_errors(staff_client, gallery, payload, field):
    response = staff_client.post("/api/people/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "invalid"
    assert field in body["error"]["details"]


def test_external_id_is_unique(staff_client):
    assert staff_client.post("/api/people/", {"name": "A", "external_id": "S1"}, format="json").status_code == 201
    dup = staff_client.post("/api/people/", {"name": "B", "external_id": "S1"}, format="json")
    assert dup.status_code == 400 and "external_id" in dup.json()["error"]["details"]
    # Blank external ids mean "none" and never collide.
    for name in ("C", "D"):
        assert staff_client.post("/api/people/", {"name": name, "external_id": ""}, format="json").status_code == 201


def test_list_paginates_searches_and_filters(staff_client, user_client, gallery):
    for i in range(7):
        staff_client.post("/api/people/", {
            "name": f"Student {i}", "external_id": f"ID-{i:03d}",
            "galleries": ["class-a"] if i % 2 == 0 else [],
        }, format="json")
    page = user_client.get("/api/people/?page_size=3").json()
    assert page["count"] == 7 and len(page["results"]) == 3 and page["next"]
    assert len(user_client.get("/api/people/?page_size=3&page=3").json()["results"]) == 1
    assert [p["name"] for p in user_client.get("/api/people/?search=student 4").json()["results"]] == ["Student 4"]
    assert [p["external_id"] for p in user_client.get("/api/people/?search=ID-006").json()["results"]] == ["ID-006"]
    by_slug = user_client.get("/api/people/?gallery=class-a").json()
    by_id = user_client.get(f"/api/people/?gallery={gallery['id']}").json()
    assert by_slug["count"] == by_id["count"] == 4
    unknown = user_client.get("/api/people/?gallery=nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_gallery"
    assert user_client.get("/api/people/?page=99").status_code == 404


def test_gallery_crud_and_search(staff_client, user_client, gallery):
    assert gallery["slug"] == "class-a"
    dup = staff_client.post("/api/galleries/", {"name": "Again", "slug": "class-a"}, format="json")
    assert dup.status_code == 400
    bad = staff_client.post("/api/galleries/", {"name": "Bad", "slug": "not a slug"}, format="json")
    assert bad.status_code == 400
    staff_client.post("/api/galleries/", {"name": "Front door", "slug": "door"}, format="json")
    assert [g["slug"] for g in user_client.get("/api/galleries/?search=door").json()["results"]] == ["door"]
    url = f"/api/galleries/{gallery['id']}/"
    assert staff_client.patch(url, {"description": "Year 3"}, format="json").json()["description"] == "Year 3"
    assert staff_client.delete(url).status_code == 204
    assert user_client.get(url).status_code == 404


def test_deleting_a_person_removes_faces_files_and_index_entries(
    staff_client, user_client, engine, django_capture_on_commit_callbacks
):
    from people.models import Face

    person = staff_client.post("/api/people/", {"name": "Obama"}, format="json").json()
    faces_url = f"/api/people/{person['id']}/faces/"
    staff_client.post(faces_url, {"image": [upload(TRAIN / "obama" / "obama.jpg"),
                                            upload(TRAIN / "obama" / "obama2.jpg")]})
    faces = list(Face.objects.filter(person_id=person["id"]))
    paths = [f.image.path for f in faces] + [f.thumbnail.path for f in faces]
    assert len(faces) == 2 and all(os.path.exists(p) for p in paths)
    before = user_client.post("/api/faces/recognize/", {"image": upload(MISC / "obama_small.jpg")}).json()
    assert before["top_match"]["person_id"] == person["id"]

    with django_capture_on_commit_callbacks(execute=True):  # files go once the delete commits
        assert staff_client.delete(f"/api/people/{person['id']}/").status_code == 204
    assert not Face.objects.filter(person_id=person["id"]).exists()
    assert not any(os.path.exists(p) for p in paths)
    after = user_client.post("/api/faces/recognize/", {"image": upload(MISC / "obama_small.jpg")}).json()
    assert after["top_match"] is None and after["faces"][0]["label"] == "unknown"
    assert user_client.get("/api/stats/").json()["index"]["faces"] == 0
