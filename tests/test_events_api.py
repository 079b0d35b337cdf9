"""Recognition events: the pipeline's idempotent upsert, the read-only API and its filters, the crop
served to users only, the retention purge, a person's erasure, the admin. Real database, real JPEG
crops cut from a test photo, media in a temporary folder per test."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.db import IntegrityError
from PIL import Image

from conftest import MISC
from events import services as event_services
from events.models import Event
from events.services import event_crops_purge, events_erase_person
from events.tasks import purge_event_crops
from people.models import Gallery, Person
from people.services import person_create, person_delete
from streams.models import Camera
from tests.event_rows import T0, write_event

EVENTS = "/api/events/"


# ---- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Runs what the code under test deferred to after commit (file deletions)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def jpeg(box: tuple[int, int, int, int] = (0, 0, 200, 200), quality: int = 85) -> bytes:
    with Image.open(MISC / "obama.jpg") as photo:
        crop = photo.convert("RGB").crop(box).resize((112, 112))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def embedding(seed: int = 0) -> bytes:
    return np.random.default_rng(seed).standard_normal(128).astype("<f4").tobytes()


def upsert(**changes) -> Event:
    """An event with a crop and an embedding (tests of what is stored); see tests.event_rows."""
    return write_event(**{"embedding": embedding(), "crop_jpeg": jpeg(), **changes})


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [event["id"] for event in response.json()["results"]]


# ---- the upsert ------------------------------------------------------------------------------

def test_upsert_creates_then_updates_the_same_row(db, media):
    uid = uuid.uuid4()
    first = upsert(uid=uid, frames_seen=3)
    crop_name = first.crop.name
    assert crop_name.startswith("events/2025/03/01/") and (media / crop_name).is_file()
    assert Event.objects.count() == 1 and first.uid == uid

    closed = T0 + timedelta(seconds=9)
    again = upsert(uid=uid, frames_seen=40, last_seen=closed, closed_at=closed, crop_jpeg=None, embedding=None)
    assert again.pk == first.pk and Event.objects.count() == 1
    event = Event.objects.get()
    assert (event.frames_seen, event.last_seen, event.closed_at) == (40, closed, closed)
    assert event.crop.name == crop_name, "crop_jpeg=None keeps the crop"
    assert bytes(event.embedding) == embedding(), "embedding=None keeps the embedding"
    assert files(media) == [media / crop_name]


def test_a_new_crop_replaces_the_old_file_after_commit(db, media, commit):
    uid = uuid.uuid4()
    old = upsert(uid=uid, crop_jpeg=jpeg()).crop.name
    new_bytes = jpeg((50, 50, 250, 250), quality=70)
    with commit():
        new = upsert(uid=uid, crop_jpeg=new_bytes, embedding=embedding(1)).crop.name
    assert new != old and files(media) == [media / new]
    event = Event.objects.get()
    assert (media / new).read_bytes() == new_bytes and bytes(event.embedding) == embedding(1)


def test_deleted_references_are_stored_as_null(db, media, user):
    camera = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    gallery = Gallery.objects.create(name="Staff", slug="staff")
    person = person_create(name="Ann")
    kept = upsert(camera_id=camera.pk, gallery_id=gallery.pk, user_id=user.pk, person_id=person.pk)
    assert (kept.camera_id, kept.gallery_id, kept.user_id, kept.person_id) == (camera.pk, gallery.pk, user.pk,
                                                                                person.pk)
    gone = upsert(camera_id=camera.pk + 1000, gallery_id=gallery.pk + 1000, user_id=user.pk + 1000,
                  person_id=person.pk + 1000)
    gone.refresh_from_db()
    assert (gone.camera_id, gone.gallery_id, gone.user_id, gone.person_id) == (None, None, None, None)
    assert gone.kind == "known" and not gone.crop and gone.embedding is None, "a deleted person's biometric data"
    assert files(media) == [media / kept.crop.name]


def test_an_update_naming_a_deleted_person_drops_the_stored_crop(db, media, commit):
    person = person_create(name="Ann")
    uid = uuid.uuid4()
    upsert(uid=uid, person_id=None, kind="unknown")
    Person.objects.filter(pk=person.pk).delete()
    with commit():
        event = upsert(uid=uid, person_id=person.pk, crop_jpeg=jpeg())
    event.refresh_from_db()
    assert not event.crop and event.embedding is None and files(media) == []


@pytest.mark.parametrize("size", [0, 511, 513, 1024])
def test_the_embedding_must_be_512_bytes(db, size):
    with pytest.raises(ValueError, match="512 bytes"):
        upsert(embedding=b"\0" * size)
    assert Event.objects.count() == 0


@pytest.mark.parametrize("change", [{"crop_jpeg": b"GIF89a..."}, {"kind": "maybe"}, {"source": "tv"}])
def test_other_bad_values_are_refused(db, change):
    with pytest.raises(ValueError):
        upsert(**change)


def test_a_failed_write_leaves_no_file_behind(db, media, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise IntegrityError("simulated conflict")

    monkeypatch.setattr(Event, "save", refuse)
    with pytest.raises(IntegrityError):
        upsert()
    assert files(media) == [] and Event.objects.count() == 0


# ---- the list and its filters ----------------------------------------------------------------

@pytest.fixture
def scene(db):
    """Five events: two cameras (one named with digits), a browser stream, two people, a gallery."""
    door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    hall = Camera.objects.create(name="12345", source_url="rtsp://cam/2")
    staff = Gallery.objects.create(name="Staff", slug="staff")
    ann, bob = person_create(name="Ann"), person_create(name="Bob")
    minute = timedelta(minutes=1)
    events = {
        "ann_door": upsert(camera_id=door.pk, gallery_id=staff.pk, person_id=ann.pk, first_seen=T0,
                           closed_at=T0 + minute),
        "unknown_door": upsert(camera_id=door.pk, gallery_id=staff.pk, first_seen=T0 + minute),
        "bob_hall": upsert(camera_id=hall.pk, source_name="12345", person_id=bob.pk, first_seen=T0 + 2 * minute,
                           closed_at=T0 + 3 * minute),
        "ann_browser": upsert(source="browser", source_name="browser:reader", person_id=ann.pk,
                              first_seen=T0 + 3 * minute, crop_jpeg=None, embedding=None),
        "unknown_hall": upsert(camera_id=hall.pk, source_name="12345", first_seen=T0 + 4 * minute,
                               closed_at=T0 + 5 * minute),
    }
    return {"door": door, "hall": hall, "staff": staff, "ann": ann, "bob": bob,
            **{name: event.pk for name, event in events.items()}}


def test_list_is_newest_first_and_needs_a_user(scene, user_client, anon_client):
    assert ids(user_client.get(EVENTS)) == [scene[n] for n in
                                            ["unknown_hall", "ann_browser", "bob_hall", "unknown_door", "ann_door"]]
    response = anon_client.get(EVENTS)
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("query, expected", [
    ("camera=door", ["unknown_door", "ann_door"]),
    ("camera={door}", ["unknown_door", "ann_door"]),
    ("camera=12345", ["unknown_hall", "bob_hall"]),  # a name made of digits, no camera with that id
    ("person={ann}", ["ann_browser", "ann_door"]),
    ("gallery=staff", ["unknown_door", "ann_door"]),
    ("gallery={staff}", ["unknown_door", "ann_door"]),
    ("unknown=true", ["unknown_hall", "unknown_door"]),
    ("unknown=false", ["ann_browser", "bob_hall", "ann_door"]),
    ("source=browser", ["ann_browser"]),
    ("source=camera&unknown=false", ["bob_hall", "ann_door"]),
    ("since=2025-03-01T09:02:00Z", ["unknown_hall", "ann_browser", "bob_hall"]),
    ("until=2025-03-01T09:02:00Z", ["unknown_door", "ann_door"]),
    ("since=2025-03-01T09:01:00Z&until=2025-03-01T09:04:00Z", ["ann_browser", "bob_hall", "unknown_door"]),
    ("since=2025-03-01T10:01:00%2B01:00&until=2025-03-01T09:01:00Z", []),  # since == until: empty, not refused
    ("open=true", ["ann_browser", "unknown_door"]),
    ("open=false", ["unknown_hall", "bob_hall", "ann_door"]),
    ("camera=door&unknown=false&open=false", ["ann_door"]),
    ("person={ann}&source=camera&since=2025-03-01T09:00:00Z", ["ann_door"]),
    ("camera=&person=&unknown=", ["unknown_hall", "ann_browser", "bob_hall", "unknown_door", "ann_door"]),
])
def test_list_filters(scene, user_client, query, expected):
    query = query.format(ann=scene["ann"].pk, staff=scene["staff"].pk, door=scene["door"].pk)
    assert ids(user_client.get(f"{EVENTS}?{query}")) == [scene[n] for n in expected]


def test_list_is_paginated(scene, user_client):
    body = user_client.get(f"{EVENTS}?page_size=2&page=2").json()
    assert body["count"] == 5 and len(body["results"]) == 2 and body["next"] and body["previous"]
    assert [e["id"] for e in body["results"]] == [scene["bob_hall"], scene["unknown_door"]]
    assert user_client.get(f"{EVENTS}?page_size=2&page=9").status_code == 404


@pytest.mark.parametrize("query, parameter", [
    ("camera=nowhere", "camera"),
    ("camera=999999", "camera"),
    ("camera=99999999999999999999999", "camera"),
    ("person=ann", "person"),
    ("person=0", "person"),
    ("person=1.5", "person"),
    ("person=99999999999999999999999", "person"),
    ("gallery=%C2%B2", "gallery"),  # "²" counts as a digit to str.isdigit
    ("gallery=99999999999999999999999", "gallery"),
    ("unknown=maybe", "unknown"),
    ("open=perhaps", "open"),
    ("source=tv", "source"),
    ("since=yesterday", "since"),
    ("until=2025-13-01", "until"),
    ("since=2025-03-02T00:00:00Z&until=2025-03-01T00:00:00Z", "until"),
])
def test_bad_filter_values_are_400_invalid(scene, user_client, query, parameter):
    response = user_client.get(f"{EVENTS}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "invalid"
    assert body["error"]["message"].startswith(f"{parameter}:") and parameter in body["error"]["details"]


def test_an_unknown_gallery_is_400_unknown_gallery(scene, user_client):
    # The same refusal as /api/people/?gallery= (people.selectors.gallery_resolve).
    for value in ["nope", "424242"]:
        response = user_client.get(f"{EVENTS}?gallery={value}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_gallery"


# ---- one event and its crop ------------------------------------------------------------------

def test_detail(scene, user_client):
    body = user_client.get(f"{EVENTS}{scene['ann_door']}/").json()
    event = Event.objects.get(pk=scene["ann_door"])
    assert list(body) == ["id", "uid", "source", "camera", "source_name", "gallery", "kind", "person", "person_id",
                          "person_name",
                          "distance", "confidence", "threshold", "first_seen", "named_at", "last_seen", "closed_at",
                          "time_to_name_ms", "frames_seen", "frames_recognised", "face_box", "face_size",
                          "sharpness", "crop_url", "has_embedding"]
    assert body["uid"] == str(event.uid) and body["camera"] == scene["door"].pk
    assert (body["person"], body["person_name"], body["kind"]) == (scene["ann"].pk, "Ann", "known")
    assert body["person_id"] == body["person"], "the name faces and recognition use, beside the first one"
    assert body["gallery"] == scene["staff"].pk and body["time_to_name_ms"] == 350.0
    assert body["crop_url"] == f"/api/events/{event.pk}/crop/" and body["has_embedding"] is True
    assert body["face_box"] == {"top": 10, "right": 120, "bottom": 130, "left": 0}

    bare = user_client.get(f"{EVENTS}{scene['ann_browser']}/").json()
    assert (bare["camera"], bare["crop_url"], bare["has_embedding"]) == (None, None, False)
    unknown = user_client.get(f"{EVENTS}{scene['unknown_door']}/").json()
    assert (unknown["person"], unknown["person_id"], unknown["person_name"]) == (None, None, None)

    missing = user_client.get(f"{EVENTS}999999/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_crop_is_served_to_users_only(scene, user_client, anon_client, media):
    event = Event.objects.get(pk=scene["ann_door"])
    response = user_client.get(f"{EVENTS}{event.pk}/crop/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    data = b"".join(response.streaming_content)
    assert data == (media / event.crop.name).read_bytes()
    assert Image.open(io.BytesIO(data)).size == (112, 112)

    anonymous = anon_client.get(f"{EVENTS}{event.pk}/crop/")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"

    for pk in [scene["ann_browser"], 999999]:
        none = user_client.get(f"{EVENTS}{pk}/crop/")
        assert none.status_code == 404 and none.json()["error"]["code"] == "not_found"

    (media / event.crop.name).unlink()  # the row outlived its file: still a 404, not a 500
    assert user_client.get(f"{EVENTS}{event.pk}/crop/").status_code == 404


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_write_methods_are_405(scene, user_client, staff_client, anon_client, method):
    for client in (user_client, staff_client):
        for path in [EVENTS, f"{EVENTS}{scene['ann_door']}/", f"{EVENTS}{scene['ann_door']}/crop/"]:
            response = getattr(client, method)(path, {}, format="json")
            assert response.status_code == 405, (path, response.content)
            assert response.json()["error"]["code"] == "method_not_allowed"
    assert getattr(anon_client, method)(EVENTS, {}, format="json").status_code == 401
    assert Event.objects.count() == 5


def test_schema_documents_the_filters(db, user_client):
    schema = user_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    parameters = {p["name"] for p in schema["paths"]["/api/events/"]["get"]["parameters"]}
    assert {"camera", "person", "gallery", "unknown", "source", "since", "until", "open", "page",
            "page_size"} <= parameters
    assert "/api/events/{id}/crop/" in schema["paths"]


# ---- retention -------------------------------------------------------------------------------

def test_purge_clears_old_crops_and_keeps_recent_ones(db, media, settings, commit):
    settings.EVENT_RETENTION_DAYS = 30
    now = T0 + timedelta(days=40)
    old = upsert(last_seen=T0)
    edge = upsert(last_seen=now - timedelta(days=30))  # exactly at the limit: kept
    recent = upsert(first_seen=now - timedelta(days=1), last_seen=now - timedelta(days=1))
    with commit():
        assert event_crops_purge(now=now) == 1
    old.refresh_from_db()
    assert not old.crop and old.embedding is None and old.frames_seen == 10, "the row stays"
    assert files(media) == sorted(media / e.crop.name for e in [edge, recent])
    for event in (edge, recent):
        event.refresh_from_db()
        assert event.crop and event.embedding
    assert event_crops_purge(now=now) == 0, "nothing left to purge"


def test_purge_works_in_batches(db, media, settings, commit, monkeypatch):
    settings.EVENT_RETENTION_DAYS = 1
    monkeypatch.setattr(event_services, "PURGE_BATCH", 2)
    for index in range(6):  # crop and embedding, crop only, embedding only, and one with neither (not counted)
        upsert(track_id=index, embedding=None if index in (0, 2, 5) else embedding(index),
               crop_jpeg=None if index in (4, 5) else jpeg())
    with commit():
        assert event_crops_purge() == 5
    assert files(media) == [] and not Event.objects.exclude(crop="").exists()
    assert not Event.objects.filter(embedding__isnull=False).exists()


def test_zero_retention_keeps_everything(db, media, settings):
    settings.EVENT_RETENTION_DAYS = 0
    event = upsert(last_seen=T0 - timedelta(days=3650))
    assert event_crops_purge() == 0
    assert purge_event_crops.apply().get() == 0
    out = io.StringIO()
    call_command("purge_event_crops", stdout=out)
    assert "nothing purged" in out.getvalue()
    assert files(media) == [media / event.crop.name]


def test_purge_task_and_command(db, media, settings, commit):
    settings.EVENT_RETENTION_DAYS = 30
    upsert(last_seen=T0)
    upsert(last_seen=T0)
    with commit():
        assert purge_event_crops.apply().get() == 2
    upsert(last_seen=T0)
    out = io.StringIO()
    with commit():
        call_command("purge_event_crops", stdout=out)
    assert "Purged the crops of 1 event(s)" in out.getvalue() and files(media) == []


# ---- a person's erasure ----------------------------------------------------------------------

@pytest.fixture
def ann_events(db):
    camera = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    ann, bob = person_create(name="Ann"), person_create(name="Bob")
    events = [upsert(camera_id=camera.pk, person_id=ann.pk, track_id=n) for n in range(3)]
    bobs = upsert(camera_id=camera.pk, person_id=bob.pk, crop_jpeg=None)  # no crop: nothing to delete
    return ann, [e.pk for e in events], bobs


@pytest.mark.parametrize("path", ["service", "api", "admin", "queryset"])
def test_deleting_a_person_erases_their_events_crops(ann_events, media, commit, request, path):
    ann, event_ids, bobs = ann_events
    with commit():
        if path == "service":
            person_delete(person=ann)
        elif path == "api":
            assert request.getfixturevalue("staff_client").delete(f"/api/people/{ann.pk}/").status_code == 204
        elif path == "admin":
            browser = request.getfixturevalue("browser")
            assert browser.post(f"/admin/people/person/{ann.pk}/delete/", {"post": "yes"}).status_code == 302
        else:
            Person.objects.filter(pk=ann.pk).delete()
    events = Event.objects.filter(pk__in=event_ids)
    assert events.count() == 3, "the events keep their rows"
    for event in events:
        assert event.person_id is None and not event.crop and event.embedding is None
        assert event.camera_id is not None and event.first_seen == T0
    assert files(media) == []
    bobs.refresh_from_db()
    assert bobs.person_id is not None and bobs.embedding, "another person's events are untouched"


def test_erase_person_counts(ann_events, media, commit):
    ann, event_ids, bobs = ann_events
    with commit():
        assert events_erase_person(person_id=ann.pk) == 3
        assert events_erase_person(person_id=bobs.person_id) == 1  # its embedding
    assert files(media) == []
    assert Event.objects.filter(person=ann).count() == 3, "the person stays: only their data went"


def test_deleting_events_deletes_their_crops(db, media, commit):
    first, second, third = upsert(), upsert(), upsert(crop_jpeg=None)
    with commit():
        first.delete()
    assert files(media) == [media / second.crop.name]
    with commit():
        Event.objects.filter(pk__in=[second.pk, third.pk]).delete()
    assert files(media) == []


# ---- the admin -------------------------------------------------------------------------------

def test_admin_pages_render(scene, browser):
    page = browser.get("/admin/events/event/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'/api/events/{scene["ann_door"]}/crop/' in html
    assert f'/admin/people/person/{scene["ann"].pk}/change/' in html
    assert "/admin/events/event/add/" not in html
    for query in ["kind__exact=known", "source__exact=browser", f"camera__id__exact={scene['door'].pk}",
                  f"gallery__id__exact={scene['staff'].pk}", "q=Ann", "q=12345", "first_seen__year=2025"]:
        assert browser.get(f"/admin/events/event/?{query}").status_code == 200, query

    change = browser.get(f"/admin/events/event/{scene['ann_door']}/change/")
    html = change.content.decode()
    assert change.status_code == 200 and f'/api/events/{scene["ann_door"]}/crop/' in html
    assert f'/admin/people/person/{scene["ann"].pk}/change/' in html and "512 bytes" in html
    assert f'/admin/streams/camera/{scene["door"].pk}/change/' in html
    assert 'name="_save"' not in html, "read only"
    without_crop = browser.get(f"/admin/events/event/{scene['ann_browser']}/change/")
    assert without_crop.status_code == 200 and "/crop/" not in without_crop.content.decode()
    assert browser.get("/admin/events/event/add/").status_code == 403
    thumbnail = browser.get(f"/api/events/{scene['ann_door']}/crop/")  # the admin's session authenticates
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"


def test_admin_delete_removes_the_crop(scene, browser, media, commit):
    event = Event.objects.get(pk=scene["ann_door"])
    name = event.crop.name
    with commit():
        response = browser.post(f"/admin/events/event/{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Event.objects.filter(pk=event.pk).exists()
    assert not (media / name).exists() and len(files(media)) == 3


def test_each_write_announces_its_phase_after_commit(db, commit):
    from events.hooks import event_recorded

    seen = []

    def receiver(sender, event, phase, **kwargs):
        seen.append((event.uid, phase, event.closed_at is not None))

    event_recorded.connect(receiver)
    try:
        uid = uuid.uuid4()
        end = T0 + timedelta(seconds=3)
        for closed_at in (None, None, end, end):
            with commit():
                upsert(uid=uid, closed_at=closed_at)
    finally:
        event_recorded.disconnect(receiver)
    assert seen == [(uid, "opened", False), (uid, "updated", False), (uid, "closed", True), (uid, "updated", True)]
