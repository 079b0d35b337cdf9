"""Corrections: "this is not X" / "this is Y" on events and sightings, through the API, with real
LFW photos, the real engine and the real database. Aaron Peirsol is enrolled; Brendan Hansen, a
stranger, is named Aaron at the default threshold (measured: 0.576 and 0.563) until one "not".
Media in a temporary folder per test."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from conftest import TRAIN, upload
from core.audit.models import AuditRecord
from corrections.models import NegativeFace
from events.models import Event
from people.models import Person
from tests.event_rows import T0, write_event

LFW = Path(__file__).resolve().parents[2] / "shared" / "lfw-dev" / "images"
AARON = [LFW / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2, 3, 4)]
BRENDAN = [LFW / "Brendan_Hansen_0001.jpg", LFW / "Brendan_Hansen_0002.jpg"]

pytestmark = pytest.mark.skipif(not LFW.is_dir(), reason="../shared/lfw-dev is not here")


@pytest.fixture
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture
def aaron(db, engine, media) -> Person:
    """Aaron Peirsol enrolled from his first photo, beside Obama and Biden (people/train)."""
    from people.services import face_enroll, person_create

    for name in ("obama", "biden"):
        face_enroll(person=person_create(name=name), uploads=[upload(p) for p in sorted((TRAIN / name).iterdir())])
    person = person_create(name="Aaron Peirsol")
    outcome, = face_enroll(person=person, uploads=[upload(AARON[0])])
    assert outcome.error is None
    return person


def recognise(client, path: Path) -> str:
    response = client.post("/api/faces/recognize/", {"image": upload(path)})
    assert response.status_code == 200, response.content
    return response.json()["faces"][0]["label"]


def face_of(engine, path: Path) -> tuple[bytes, bytes]:
    """The largest face of a photo as the live pipeline keeps it: embedding bytes and a JPEG crop."""
    result = engine.analyze_bytes([path.read_bytes()])[0]
    face = result.largest
    box = face.box
    margin = box.width // 3
    with Image.open(path) as photo:
        crop = photo.convert("RGB").crop((max(0, box.left - margin), max(0, box.top - margin),
                                          box.right + margin, box.bottom + margin))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=92)
    return face.embedding.astype("<f4").tobytes(), buffer.getvalue()


def closed_event(engine, path: Path, person: Person | None, **changes) -> Event:
    embedding, crop = face_of(engine, path)
    values = {"embedding": embedding, "crop_jpeg": crop, "person_id": person.pk if person else None,
              "closed_at": T0 + timedelta(seconds=3), "distance": 0.57}
    return write_event(**{**values, **changes})


def correct(client, **body):
    return client.post("/api/corrections/", body, format="json")


# ---- the key behaviour -----------------------------------------------------------------------------

def test_one_not_x_stops_naming_the_stranger_x_and_x_is_still_x(aaron, engine, staff_client, user_client,
                                                               django_capture_on_commit_callbacks):
    assert recognise(user_client, BRENDAN[0]) == "Aaron Peirsol"
    assert recognise(user_client, BRENDAN[1]) == "Aaron Peirsol"
    event = closed_event(engine, BRENDAN[0], aaron)
    assert event.kind == "known"

    with django_capture_on_commit_callbacks(execute=True):
        response = correct(staff_client, event=event.pk, verdict="not")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["verdict"] == "not" and body["person_id"] == aaron.pk and body["created"] and body["cleared"]
    negative = NegativeFace.objects.get(pk=body["negative"]["id"])
    assert negative.person == aaron and negative.event == event and negative.source == "event"
    assert bytes(negative.embedding) == bytes(event.embedding) and negative.crop.name.startswith("corrections/")
    event.refresh_from_db()
    assert event.person is None and event.kind == "unknown"
    assert body["unknown_sighting_id"] is not None, "the face joins unknown clustering"

    # The same photo and a held-out photo of the stranger are no longer Aaron; Aaron still is.
    assert recognise(user_client, BRENDAN[0]) != "Aaron Peirsol"
    assert recognise(user_client, BRENDAN[1]) != "Aaron Peirsol"
    assert [recognise(user_client, p) for p in AARON[1:]] == ["Aaron Peirsol"] * 3

    record = AuditRecord.objects.get(action="correction.not")
    assert record.target_ids == [aaron.pk] and record.actor_name == "operator"
    assert record.details["event_id"] == event.pk and record.details["negative_id"] == negative.pk

    # Listed for staff, crop served to staff only; no embedding in the answer.
    listed = staff_client.get(f"/api/corrections/negatives/?person={aaron.pk}").json()
    assert [n["id"] for n in listed["results"]] == [negative.pk] and "embedding" not in listed["results"][0]
    crop = staff_client.get(listed["results"][0]["crop_url"])
    assert crop.status_code == 200 and b"".join(crop.streaming_content).startswith(b"\xff\xd8\xff")
    assert user_client.get(listed["results"][0]["crop_url"]).status_code == 403

    # Again: the same negative (200), nothing new.
    again = correct(staff_client, event=event.pk, verdict="not", person=aaron.pk)
    assert again.status_code == 200 and again.json()["created"] is False and NegativeFace.objects.count() == 1

    # Undo: the stranger is Aaron again; the crop file goes after commit.
    path = Path(negative.crop.path)
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_client.delete(f"/api/corrections/negatives/{negative.pk}/").status_code == 204
    assert not NegativeFace.objects.exists() and not path.exists()
    assert AuditRecord.objects.filter(action="correction.undo", target_ids=[negative.pk]).exists()
    assert recognise(user_client, BRENDAN[1]) == "Aaron Peirsol"


def test_not_x_also_holds_in_batch_recognition(aaron, engine, staff_client, user_client):
    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    response = user_client.post("/api/faces/batch-recognize/", {"images": [upload(BRENDAN[1]), upload(AARON[2])]})
    labels = [result["faces"][0]["label"] for result in response.json()["results"]]
    assert labels[0] != "Aaron Peirsol" and labels[1] == "Aaron Peirsol"


def test_not_someone_it_was_not_named_keeps_the_name(aaron, engine, staff_client, user_client):
    """Any person may be marked as not this face; the event keeps whom it was named after."""
    obama = Person.objects.get(name="obama")
    event = closed_event(engine, BRENDAN[0], obama)
    response = correct(staff_client, event=event.pk, verdict="not", person=aaron.pk)
    assert response.status_code == 201 and response.json()["cleared"] is False
    event.refresh_from_db()
    assert event.person == obama and event.kind == "known"
    assert recognise(user_client, BRENDAN[1]) != "Aaron Peirsol"


def test_is_y_enrols_the_crop_and_names_the_event(aaron, engine, staff_client, user_client, settings):
    settings.DUPLICATE_THRESHOLD = 0.6  # the stranger is named Aaron at 0.6: the check sees it there too
    event = closed_event(engine, BRENDAN[0], aaron)
    brendan = Person.objects.create(name="Brendan Hansen")
    # The stranger's face is within the threshold of Aaron's: the duplicate check says so first.
    refused = correct(staff_client, event=event.pk, verdict="is", person=brendan.pk)
    assert _code(refused) == (422, "possible_duplicate") and refused.json()["error"]["details"]["person_id"] == aaron.pk
    event.refresh_from_db()
    assert event.person == aaron and not brendan.faces.exists()
    response = correct(staff_client, event=event.pk, verdict="is", person=brendan.pk, force=True)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["person_id"] == brendan.pk and body["previous_person_id"] == aaron.pk and not body["duplicate"]
    assert "possible_duplicate" in [w["code"] for w in body["warnings"]]
    assert brendan.faces.filter(pk=body["face_id"], status="encoded").exists()
    event.refresh_from_db()
    assert event.person == brendan and event.kind == "known" and event.distance is None
    assert recognise(user_client, BRENDAN[1]) == "Brendan Hansen"
    assert AuditRecord.objects.filter(action="correction.is", target_ids=[brendan.pk]).exists()


def test_not_x_then_is_y_needs_no_force(aaron, engine, staff_client, user_client, settings):
    """Once the face is a negative of Aaron, the duplicate check (which searches the same index)
    no longer takes it for Aaron: the usual two-step correction goes through the gate unforced."""
    settings.DUPLICATE_THRESHOLD = 0.6  # where the check would take the stranger for Aaron (see above)
    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    brendan = Person.objects.create(name="Brendan Hansen")
    response = correct(staff_client, event=event.pk, verdict="is", person=brendan.pk)
    assert response.status_code == 201, response.content
    assert response.json()["previous_person_id"] is None and response.json()["warnings"] == []
    assert recognise(user_client, BRENDAN[1]) == "Brendan Hansen"
    assert recognise(user_client, AARON[1]) == "Aaron Peirsol"


def test_is_y_refused_by_the_gate_is_a_422(aaron, engine, staff_client):
    """A crop with no face in it: the enrolment's refusal is the answer, and nothing changed."""
    event = closed_event(engine, BRENDAN[0], aaron, crop_jpeg=_blank_jpeg())
    brendan = Person.objects.create(name="Brendan Hansen")
    response = correct(staff_client, event=event.pk, verdict="is", person=brendan.pk)
    assert response.status_code == 422 and response.json()["error"]["code"] == "no_face"
    event.refresh_from_db()
    assert event.person == aaron and not brendan.faces.exists()
    assert not AuditRecord.objects.filter(action="correction.is").exists()


def _blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 120), (128, 128, 128)).save(buffer, format="JPEG")
    return buffer.getvalue()


# ---- sightings -------------------------------------------------------------------------------------

def test_not_x_on_a_sighting(aaron, engine, staff_client, user_client):
    from unknowns.services import sighting_from_event

    sighting = sighting_from_event(closed_event(engine, BRENDAN[0], aaron))
    assert sighting.matched_person == aaron
    response = correct(staff_client, sighting=sighting.pk, verdict="not")
    assert response.status_code == 201, response.content
    sighting.refresh_from_db()
    assert sighting.matched_person is None
    negative = NegativeFace.objects.get()
    assert negative.source == "sighting" and negative.sighting == sighting
    assert recognise(user_client, BRENDAN[1]) != "Aaron Peirsol"


# ---- bad inputs --------------------------------------------------------------------------------------

def _code(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_bad_inputs_are_clear_4xx(aaron, engine, staff_client, user_client, anon_client):
    known = closed_event(engine, BRENDAN[0], aaron)
    unknown = closed_event(engine, BRENDAN[1], None)
    purged = closed_event(engine, BRENDAN[1], aaron, embedding=None, crop_jpeg=None)
    Event.objects.filter(pk=purged.pk).update(embedding=None, crop="")
    still_open = closed_event(engine, BRENDAN[0], aaron, closed_at=None)
    cases = [
        ({"verdict": "not"}, (400, "invalid")),
        ({"event": known.pk, "sighting": 1, "verdict": "not"}, (400, "invalid")),
        ({"event": known.pk, "verdict": "maybe"}, (400, "invalid")),
        ({"event": "x", "verdict": "not"}, (400, "invalid")),
        ({"event": known.pk, "verdict": "is"}, (400, "invalid")),
        ({"event": 10**9, "verdict": "not"}, (400, "unknown_event")),
        ({"sighting": 10**9, "verdict": "not"}, (400, "unknown_sighting")),
        ({"event": known.pk, "verdict": "not", "person": 10**9}, (400, "unknown_person")),
        ({"event": unknown.pk, "verdict": "not"}, (422, "no_named_person")),
        ({"event": purged.pk, "verdict": "not"}, (422, "no_face_data")),
        ({"event": purged.pk, "verdict": "is", "person": aaron.pk}, (422, "no_crop")),
        ({"event": still_open.pk, "verdict": "not"}, (422, "event_open")),
    ]
    for body, want in cases:
        assert _code(correct(staff_client, **body)) == want, body
    assert correct(user_client, event=known.pk, verdict="not").status_code == 403
    assert correct(anon_client, event=known.pk, verdict="not").status_code == 401
    assert not NegativeFace.objects.exists() and not AuditRecord.objects.filter(action__startswith="correction")
    assert _code(staff_client.get("/api/corrections/negatives/?person=999999")) == (400, "unknown_person")
    assert _code(staff_client.get("/api/corrections/negatives/?person=abc")) == (400, "invalid")
    assert staff_client.delete("/api/corrections/negatives/999999/").status_code == 404
    assert staff_client.get("/api/corrections/negatives/999999/crop/").status_code == 404


# ---- erasure and deletion ------------------------------------------------------------------------------

def test_erasing_a_person_removes_their_negatives_and_files(aaron, engine, staff_client,
                                                            django_capture_on_commit_callbacks):
    from people.hooks import person_erasing

    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    path = Path(NegativeFace.objects.get().crop.path)
    assert path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        results = person_erasing.send(sender=Person, person=aaron)
    assert {"negatives": 1} in [counts for _, counts in results]
    assert not NegativeFace.objects.exists() and not path.exists()


def test_a_deleted_person_takes_their_negatives_whatever_the_path(aaron, engine, staff_client,
                                                                  django_capture_on_commit_callbacks):
    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    path = Path(NegativeFace.objects.get().crop.path)
    with django_capture_on_commit_callbacks(execute=True):
        Person.objects.filter(pk=aaron.pk).delete()  # a queryset: no service, no erasure signal
    assert not NegativeFace.objects.exists() and not path.exists()


def test_a_negative_outlives_its_source_event(aaron, engine, staff_client, user_client):
    """The negative is Aaron's data about a stranger: deleting the event does not undo it."""
    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    event.delete()
    negative = NegativeFace.objects.get()
    assert negative.event_id is None and negative.crop
    assert recognise(user_client, BRENDAN[1]) != "Aaron Peirsol"


def test_negatives_of_another_model_are_not_loaded(aaron, engine, staff_client, user_client):
    event = closed_event(engine, BRENDAN[0], aaron)
    assert correct(staff_client, event=event.pk, verdict="not").status_code == 201
    from django.db import transaction

    from corrections.index_log import index_negatives_changed

    with transaction.atomic():
        NegativeFace.objects.update(model="another-model/v0")
        index_negatives_changed(NegativeFace.objects.values_list("pk", flat=True))
    assert recognise(user_client, BRENDAN[1]) == "Aaron Peirsol"


def test_live_streams_respect_negatives(aaron, engine, staff_client):
    """Cameras and browser streams match through streams.matching's gallery_matcher: the same index."""
    from streams.matching import gallery_matcher

    held_out = engine.analyze_bytes([BRENDAN[1].read_bytes()])[0].largest.embedding[None, :]
    match = gallery_matcher(None)
    assert match(held_out)[0][0].person_id == aaron.pk
    assert correct(staff_client, event=closed_event(engine, BRENDAN[0], aaron).pk, verdict="not").status_code == 201
    assert aaron.pk not in [c.person_id for c in match(held_out)[0]]


def test_is_y_on_a_sighting(aaron, engine, staff_client, user_client):
    from unknowns.services import sighting_cluster, sighting_from_event

    sighting = sighting_from_event(closed_event(engine, BRENDAN[0], None))
    assert sighting.matched_person is None and sighting_cluster(sighting) is not None
    brendan = Person.objects.create(name="Brendan Hansen")
    response = correct(staff_client, sighting=sighting.pk, verdict="is", person=brendan.pk, force=True)
    assert response.status_code == 201, response.content
    sighting.refresh_from_db()
    assert sighting.matched_person == brendan and brendan.faces.count() == 1
    assert recognise(user_client, BRENDAN[1]) == "Brendan Hansen"
