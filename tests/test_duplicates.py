"""Duplicate identities (people/duplicates.py): the same person enrolled under two names is found by
the staff endpoint and the admin page, and by the enrolment check; bad parameters are clear 400s.
Real photos, real weights, real database."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from conftest import TRAIN, upload

URL = "/api/people/duplicates/"


def _enrol(person, *photos):
    """Enrol through the service, forcing past the duplicate check where enrolment has one: these
    tests plant duplicates on purpose."""
    from people import services

    force = {"force": True} if "force" in inspect.signature(services.face_enroll).parameters else {}
    outcomes = services.face_enroll(person=person, uploads=[upload(p) for p in photos], **force)
    assert all(o.error is None for o in outcomes), [o.error.message for o in outcomes if o.error]
    return [o.face for o in outcomes]


@pytest.fixture
def planted(db, engine):
    """Five real people, two of them enrolled a second time under another name with their other
    photo: Obama / "Barack Obama" and Biden / "Joe Biden". Obama, Barack and Biden are in gallery "front"."""
    from people.services import gallery_create, person_create

    front = gallery_create(name="Front", slug="front")
    people = {
        "obama": person_create(name="Obama", galleries=[front]),
        "barack": person_create(name="Barack Obama", galleries=[front]),
        "biden": person_create(name="Biden", galleries=[front]),
        "joe": person_create(name="Joe Biden"),
        "kit": person_create(name="Kit Harington"),
        "rose": person_create(name="Rose Leslie"),
        "alex": person_create(name="Alex Lacamoire"),
    }
    faces = {
        "obama": _enrol(people["obama"], TRAIN / "obama" / "obama.jpg"),
        "barack": _enrol(people["barack"], TRAIN / "obama" / "obama2.jpg"),
        "biden": _enrol(people["biden"], TRAIN / "biden" / "biden.jpg"),
        "joe": _enrol(people["joe"], TRAIN / "biden" / "biden2.jpg"),
        "kit": _enrol(people["kit"], *sorted((TRAIN / "kit_harington").iterdir())),
        "rose": _enrol(people["rose"], *sorted((TRAIN / "rose_leslie").iterdir())),
        "alex": _enrol(people["alex"], TRAIN / "alex_lacamoire" / "img1.jpg"),
    }
    return {"front": front, "people": people, "faces": faces}


def _key(pair: dict) -> tuple[int, int]:
    return pair["person_a_id"], pair["person_b_id"]


def _planted_keys(planted) -> set[tuple[int, int]]:
    p = planted["people"]
    return {tuple(sorted((p["obama"].pk, p["barack"].pk))), tuple(sorted((p["biden"].pk, p["joe"].pk)))}


def test_api_finds_every_planted_duplicate_nearest_first(planted, staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200, response.content
    body = response.json()
    # The pass's default is the match threshold: every pair recognition itself could confuse.
    assert body["threshold"] == pytest.approx(0.6) and body["gallery"] is None
    assert body["faces"] == 9 and body["people"] == 7
    pairs = body["results"]
    assert body["count"] == len(pairs)
    keys = [_key(p) for p in pairs]
    assert _planted_keys(planted) <= set(keys)
    distances = [p["distance"] for p in pairs]
    assert distances == sorted(distances) and all(0 < d <= 0.6 for d in distances)
    people = planted["people"]
    faces = planted["faces"]
    obama = next(p for p in pairs if _key(p) == tuple(sorted((people["obama"].pk, people["barack"].pk))))
    names = {obama["person_a_name"], obama["person_b_name"]}
    assert names == {"Obama", "Barack Obama"}
    assert {obama["face_a_id"], obama["face_b_id"]} == {faces["obama"][0].pk, faces["barack"][0].pk}
    assert obama["face_pairs"] == 1
    # The distance is the two faces' real distance.
    from people.models import Face

    a, b = Face.objects.get(pk=obama["face_a_id"]), Face.objects.get(pk=obama["face_b_id"])
    assert obama["distance"] == pytest.approx(float(np.linalg.norm(a.embedding_array() - b.embedding_array())),
                                              abs=1e-5)
    for pair in pairs:  # never a person paired with themselves, always the smaller id first
        assert pair["person_a_id"] < pair["person_b_id"]


def test_threshold_filter(planted, staff_client):
    pairs = staff_client.get(URL, {"threshold": 2}).json()["results"]
    distances = [p["distance"] for p in pairs]
    assert len(pairs) == 7 * 6 // 2  # every two people at the widest threshold
    for cut in (distances[0] - 1e-4, distances[0] + 1e-4, distances[3] + 1e-4, 0.6, 0.45):
        body = staff_client.get(URL, {"threshold": cut}).json()
        inside = [p for p in pairs if p["distance"] <= cut]
        assert body["threshold"] == pytest.approx(cut)
        assert body["count"] == len(inside)
        assert [_key(p) for p in body["results"]] == [_key(p) for p in inside]


def test_gallery_filter_by_id_and_slug(planted, staff_client):
    people = planted["people"]
    obama_pair = tuple(sorted((people["obama"].pk, people["barack"].pk)))
    for ref in (planted["front"].pk, "front"):
        body = staff_client.get(URL, {"gallery": ref}).json()
        assert body["gallery"] == planted["front"].pk and body["people"] == 3 and body["faces"] == 3
        keys = {_key(p) for p in body["results"]}
        assert obama_pair in keys
        # Joe Biden is not in the gallery: his pair with Biden is not shown.
        assert all(people["joe"].pk not in key for key in keys)


def test_limit_keeps_the_nearest_and_counts_all(planted, staff_client):
    full = staff_client.get(URL, {"threshold": 2}).json()
    body = staff_client.get(URL, {"threshold": 2, "limit": 3}).json()
    assert body["count"] == full["count"] and len(body["results"]) == 3
    assert body["results"] == full["results"][:3]


@pytest.mark.parametrize("query, field", [
    ({"threshold": "0"}, "threshold"),
    ({"threshold": "3"}, "threshold"),
    ({"threshold": "-0.1"}, "threshold"),
    ({"threshold": "abc"}, "threshold"),
    ({"threshold": "NaN"}, "threshold"),
    ({"threshold": "inf"}, "threshold"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"),
])
def test_bad_parameters_are_400_in_the_error_shape(db, staff_client, query, field):
    response = staff_client.get(URL, query)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "invalid"
    assert field in body["error"]["details"]


def test_unknown_gallery_is_400(db, staff_client):
    for ref in ("nowhere", "987654", "99999999999999999999999"):
        response = staff_client.get(URL, {"gallery": ref})
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "unknown_gallery"


def test_repeated_parameter_is_400(db, staff_client):
    response = staff_client.get(f"{URL}?threshold=0.5&threshold=0.6")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_staff_only(db, user_client, anon_client):
    assert user_client.get(URL).status_code == 403
    assert user_client.get(URL).json()["error"]["code"] == "permission_denied"
    assert anon_client.get(URL).status_code == 401


def test_empty_gallery_answers_no_pairs(db, staff_client):
    body = staff_client.get(URL).json()
    assert body == {"threshold": 0.6, "gallery": None, "faces": 0, "people": 0, "count": 0, "results": []}


def test_possible_duplicate_finds_the_other_person_not_oneself(planted, engine):
    from people.duplicates import possible_duplicate

    people, faces = planted["people"], planted["faces"]
    # Obama's own face is nearest to himself (distance 0): the check skips him and names Barack.
    vector = faces["obama"][0].embedding_array()
    hit = possible_duplicate(person=people["obama"], embedding=vector)
    assert hit is not None and hit.person_id == people["barack"].pk
    assert hit.person_name == "Barack Obama" and hit.face_id == faces["barack"][0].pk
    assert 0 < hit.distance <= 0.6
    # Alone, Alex's photo matches nobody but Alex.
    assert possible_duplicate(person=people["alex"], embedding=faces["alex"][0].embedding_array()) is None
    # A tighter threshold than the pair's distance: no hit.
    assert possible_duplicate(person=people["obama"], embedding=vector, threshold=hit.distance / 2) is None


def test_possible_duplicate_on_a_new_photo(planted, engine):
    """A photo enrolled nowhere (people/test/obama1.jpg, through the engine), for a new name: the
    nearest of Obama and Barack Obama is named; for a new Biden, nobody."""
    from people.duplicates import possible_duplicate
    from people.services import person_create

    def embed(path):
        return engine.enrol_embedding(engine.analyze_bytes([path.read_bytes()])[0].faces[0])

    people = planted["people"]
    newcomer = person_create(name="B. H. Obama")
    vector = embed(TRAIN.parent / "test" / "obama1.jpg")
    hit = possible_duplicate(person=newcomer, embedding=vector)
    assert hit is not None and hit.person_id in {people["obama"].pk, people["barack"].pk}
    from people.models import Face

    nearest = min(np.linalg.norm(Face.objects.get(pk=f.pk).embedding_array() - vector)
                  for f in planted["faces"]["obama"] + planted["faces"]["barack"])
    assert hit.distance == pytest.approx(float(nearest), abs=1e-5)
    assert possible_duplicate(person=people["obama"], embedding=vector).person_id == people["barack"].pk
    assert possible_duplicate(person=people["barack"], embedding=vector).person_id == people["obama"].pk


def test_enrolment_names_the_person_it_duplicates(db, engine):
    """face_enroll's duplicate check (people/enrolment.py) runs possible_duplicate: Obama's other
    photo under a new name is refused, naming Obama."""
    from people import services

    if "force" not in inspect.signature(services.face_enroll).parameters:
        pytest.skip("enrolment has no duplicate check yet")
    obama, barack = services.person_create(name="Obama"), services.person_create(name="Barack")
    first = _enrol(obama, TRAIN / "obama" / "obama.jpg")[0]
    outcome = services.face_enroll(person=barack, uploads=[upload(TRAIN / "obama" / "obama2.jpg")])[0]
    assert outcome.error is not None and outcome.error.error_code == "possible_duplicate"
    assert outcome.error.details["person_id"] == obama.pk and outcome.error.details["face_id"] == first.pk
    assert not barack.faces.exists()


def test_possible_duplicate_refuses_a_bad_threshold(db):
    from core.errors import ServiceError
    from people.duplicates import possible_duplicate
    from people.models import Person

    for bad in (0.0, -1.0, 3.0, math.nan, math.inf):
        with pytest.raises(ServiceError):
            possible_duplicate(person=Person(name="x"), embedding=np.zeros(128, np.float32), threshold=bad)


def test_admin_page_lists_pairs_with_links_and_thumbnails(planted, browser):
    from django.urls import reverse

    people = planted["people"]
    changelist = browser.get(reverse("admin:people_person_changelist"))
    assert changelist.status_code == 200
    page_url = reverse("admin:people_person_duplicates")
    assert page_url.encode() in changelist.content
    response = browser.get(page_url)
    assert response.status_code == 200
    html = response.content.decode()
    for key in ("obama", "barack", "biden", "joe"):
        assert reverse("admin:people_person_change", args=[people[key].pk]) in html
    for face in planted["faces"]["obama"] + planted["faces"]["barack"]:
        assert reverse("face-thumbnail", args=[face.pk]) in html
    # The thumbnails it shows load for the signed-in operator.
    thumb = browser.get(reverse("face-thumbnail", args=[planted["faces"]["obama"][0].pk]))
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    filtered = browser.get(page_url, {"threshold": "0.05"}).content.decode()
    assert "No two people have faces this close." in filtered
    bad = browser.get(page_url, {"threshold": "0"})
    assert bad.status_code == 200 and "Must be more than 0" in bad.content.decode()


def test_admin_page_is_staff_only(db, user):
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(user)
    response = client.get(reverse("admin:people_person_duplicates"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_close_pairs_matches_brute_force():
    """face_engine.pairs against a Python double loop on random vectors, exact and IVF."""
    from face_engine.pairs import close_pairs

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 128)).astype(np.float32) * 0.05
    labels = np.repeat(np.arange(60, dtype=np.int64) * 7 + 1, 3)
    vectors = (centres[np.repeat(np.arange(60), 3)] + rng.normal(size=(180, 128)).astype(np.float32) * 0.03)
    radius = float(np.quantile(np.linalg.norm(vectors[:, None] - vectors[None], axis=2), 0.05))
    expected: dict[tuple[int, int], tuple[float, int]] = {}
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            d = float(np.linalg.norm(vectors[i] - vectors[j]))
            if labels[i] != labels[j] and d <= radius:
                key = (int(min(labels[i], labels[j])), int(max(labels[i], labels[j])))
                best, count = expected.get(key, (math.inf, 0))
                expected[key] = (min(best, d), count + 1)
    assert expected
    for exact_max in (10_000, 0):  # flat, then IVF with every cell probed (exact results)
        found = close_pairs(vectors, labels, radius, exact_max=exact_max, nprobe=10_000)
        got = {(int(a), int(b)): (float(d), int(n)) for a, b, d, n in
               zip(found.label_a, found.label_b, found.distance, found.count, strict=True)}
        assert got.keys() == expected.keys()
        for key, (d, n) in expected.items():
            assert got[key][0] == pytest.approx(d, abs=1e-5) and got[key][1] == n
        assert list(found.distance) == sorted(found.distance)
        for a, b, ra, rb, d in zip(found.label_a, found.label_b, found.row_a, found.row_b, found.distance,
                                   strict=True):
            assert labels[ra] == a and labels[rb] == b
            assert float(np.linalg.norm(vectors[ra] - vectors[rb])) == pytest.approx(float(d), abs=1e-5)
