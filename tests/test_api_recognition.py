"""Recognise, batch-recognise and verify: options, response shape, galleries, errors."""

import pytest

from conftest import MISC, TEST, TRAIN, enrol_folder, upload


@pytest.fixture
def people(db, engine):
    """One photo per person of people/train; obama and biden also in gallery "door"."""
    from people.services import gallery_create

    door = gallery_create(name="Door", slug="door")
    people = enrol_folder(first_only=True)
    for name in ("obama", "biden"):
        people[name].galleries.add(door)
    return people


def recognize(client, path, **options):
    return client.post("/api/faces/recognize/", {"image": upload(path), **options})


def test_response_shape(user_client, people):
    response = recognize(user_client, TEST / "obama1.jpg")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"success", "message", "top_match", "top_matches", "total_matches_found",
                         "processing_time_ms", "faces", "timings_ms"}
    assert set(body["top_match"]) == {"face_id", "person_id", "person_name", "distance", "is_match", "confidence"}
    assert set(body["timings_ms"]) == {"decode", "detect", "landmarks", "embed", "search"}
    face = body["faces"][0]
    assert set(face["box"]) == {"top", "right", "bottom", "left"}
    assert face["bbox"] == face["box"], "the seed's name for the box stays"
    assert face["top_match"] == body["top_match"] and face["matches"] == body["top_matches"]
    assert body["processing_time_ms"] > 0


def test_match_count_and_return_all_matches(user_client, people):
    body = recognize(user_client, TEST / "obama1.jpg", return_all_matches="true", match_count=3).json()
    matches = body["top_matches"]
    assert len(matches) == 3 and len({m["person_id"] for m in matches}) == 3
    assert [m["distance"] for m in matches] == sorted(m["distance"] for m in matches)
    assert matches[0]["person_name"] == "obama" and body["total_matches_found"] == 1
    assert [m["is_match"] for m in matches] == [True, False, False]
    only_matches = recognize(user_client, TEST / "obama1.jpg").json()["top_matches"]
    assert [m["person_name"] for m in only_matches] == ["obama"]


def test_threshold_per_request(user_client, people):
    strict = recognize(user_client, TEST / "obama1.jpg", threshold=0.1).json()
    assert strict["top_match"] is None and strict["faces"][0]["label"] == "unknown"
    loose = recognize(user_client, TEST / "obama1.jpg", threshold=0.99, return_all_matches="true").json()
    assert loose["top_match"]["person_name"] == "obama"
    # Confidence is 0.5 at the threshold used (the reported distance is rounded to 1e-6).
    d = loose["top_match"]["distance"] + 1e-6
    at = recognize(user_client, TEST / "obama1.jpg", threshold=d).json()["top_match"]
    assert at["is_match"] and abs(at["confidence"] - 0.5) < 1e-5


def test_gallery_restricts_the_search(user_client, people):
    door = recognize(user_client, TEST / "johnsnow_test1.jpg", gallery="door", return_all_matches="true").json()
    assert door["faces"][0]["label"] == "unknown"
    assert {m["person_name"] for m in door["top_matches"]} <= {"obama", "biden"}
    from people.models import Gallery

    by_id = recognize(user_client, TEST / "obama1.jpg", gallery=Gallery.objects.get(slug="door").pk).json()
    assert by_id["top_match"]["person_name"] == "obama"
    unknown = recognize(user_client, TEST / "obama1.jpg", gallery="nowhere")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_gallery"


def test_image_without_faces(user_client, people, tmp_path):
    from PIL import Image

    path = tmp_path / "sky.png"
    Image.new("RGB", (320, 240), (90, 140, 230)).save(path)
    body = recognize(user_client, path).json()
    assert body["success"] is True and body["faces"] == [] and body["top_match"] is None
    assert "No face" in body["message"]


@pytest.mark.parametrize("options,field", [
    ({"match_count": 0}, "match_count"),
    ({"match_count": "many"}, "match_count"),
    ({"threshold": -1}, "threshold"),
    ({"threshold": "x"}, "threshold"),
    ({"return_all_matches": "perhaps"}, "return_all_matches"),
])
def test_bad_options_are_400(user_client, people, options, field):
    response = recognize(user_client, MISC / "obama_small.jpg", **options)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_batch_recognize(user_client, people):
    images = [upload(TEST / "obama1.jpg"), upload(TRAIN / ".." / ".." / "LICENSE", name="bad.jpg"),
              upload(TEST / "kit_with_rose.jpg")]
    response = user_client.post("/api/faces/batch-recognize/", {"images": images})
    assert response.status_code == 200
    body = response.json()
    assert (body["total_images"], body["processed"], body["failed"]) == (3, 2, 1)
    first, bad, third = body["results"]
    assert first["top_match"]["person_name"] == "obama" and first["filename"] == "obama1.jpg"
    assert bad["success"] is False and bad["error"]["code"] == "not_an_image" and bad["index"] == 1
    assert sorted(f["label"] for f in third["faces"]) == ["kit_harington", "rose_leslie"]
    assert body["processing_time_ms"] > 0


def test_batch_limits(user_client, people, settings):
    settings.MAX_BATCH_IMAGES = 2
    images = [upload(MISC / "obama_small.jpg", name=f"{i}.jpg") for i in range(3)]
    response = user_client.post("/api/faces/batch-recognize/", {"images": images})
    assert response.status_code == 400 and "At most 2 images" in response.json()["error"]["message"]
    assert user_client.post("/api/faces/batch-recognize/", {}).status_code == 400


def test_verify_two_images(user_client, people):
    same = user_client.post("/api/faces/verify/", {"image_a": upload(TRAIN / "obama" / "obama.jpg"),
                                                   "image_b": upload(TEST / "obama1.jpg")}).json()
    assert same["is_match"] is True and same["distance"] < 0.6 and same["confidence"] > 0.5
    other = user_client.post("/api/faces/verify/", {"image_a": upload(TRAIN / "obama" / "obama.jpg"),
                                                    "image_b": upload(MISC / "biden.jpg")}).json()
    assert other["is_match"] is False and other["confidence"] < 0.5


def test_verify_against_a_person(user_client, people):
    obama = people["obama"]
    body = user_client.post("/api/faces/verify/", {"image": upload(TEST / "obama1.jpg"),
                                                   "person_id": obama.pk}).json()
    assert body["is_match"] is True and body["person_name"] == "obama" and body["face_id"]
    biden = user_client.post("/api/faces/verify/", {"image": upload(TEST / "obama1.jpg"),
                                                    "person_id": people["biden"].pk}).json()
    assert biden["is_match"] is False


def test_verify_errors(user_client, people, tmp_path):
    from PIL import Image

    from people.services import person_create

    empty_person = person_create(name="Nobody yet")
    cases = [
        ({"image_a": upload(TEST / "obama1.jpg")}, 400, "invalid"),
        ({"image": upload(TEST / "obama1.jpg"), "person_id": 999999}, 400, "invalid"),
        ({"image": upload(TEST / "obama1.jpg"), "person_id": empty_person.pk}, 422, "no_encoded_faces"),
    ]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200)).save(blank)
    cases.append(({"image_a": upload(blank), "image_b": upload(TEST / "obama1.jpg")}, 422, "no_face"))
    for data, status, code in cases:
        response = user_client.post("/api/faces/verify/", data)
        assert response.status_code == status, data
        assert response.json()["error"]["code"] == code


def test_index_cache_reload_and_clear(staff_client, people):
    reload = staff_client.post("/api/faces/cache/", {"action": "reload"}, format="json").json()
    assert reload["success"] is True and reload["encodings_loaded"] == 5
    assert reload["message"].startswith("Index rebuild asked of every process")
    clear = staff_client.post("/api/faces/cache/", {"action": "clear"}, format="json").json()
    assert clear["success"] is True and clear["encodings_loaded"] == 0
    # Cleared means rebuilt on the next use, not emptied for good.
    assert recognize(staff_client, TEST / "obama1.jpg").json()["top_match"]["person_name"] == "obama"
    bad = staff_client.post("/api/faces/cache/", {"action": "explode"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_stats_count_each_stage(user_client, people):
    from core.metrics import metrics

    metrics.reset()
    recognize(user_client, TEST / "obama1.jpg")
    recognize(user_client, TEST / "kit_with_rose.jpg")
    stats = user_client.get("/api/stats/").json()
    assert (stats["index"]["faces"], stats["index"]["people"], stats["index"]["rebuilds"]) == (5, 5, 0)
    for stage in ("decode", "detect", "landmarks", "embed", "search"):
        figures = stats["stages"][stage]
        assert figures["count"] == 2
        assert figures["min_ms"] <= figures["mean_ms"] <= figures["max_ms"]
        assert figures["min_ms"] <= figures["p95_ms"] <= figures["max_ms"]


def test_openapi_schema_and_docs(anon_client, db):
    schema = anon_client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/faces/recognize/", "/api/faces/batch-recognize/", "/api/faces/verify/",
                 "/api/people/{id}/faces/", "/api/faces/encodings/", "/api/jobs/{id}/", "/api/health/"):
        assert path in paths
    docs = anon_client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_openapi_schema_is_valid_without_warnings(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "/api/faces/recognize/" in out.getvalue()
