"""A person's erasure leaves nothing of them: a person enrolled with real photos, with events (crops,
embeddings), negatives, sightings and a named cluster, webhook deliveries, recognitions, admin
history, is deleted (API, admin or a queryset); then every row of every model, the media folder,
the index of this process and of a fresh one, and the cache are searched (tests/erasure_walk.py)
and nothing of them is found. The audit record counts what went; another person keeps everything."""

from __future__ import annotations

import io
import os
import uuid

import numpy as np
import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from conftest import TEST, TRAIN, database_env, upload
from tests import erasure_walk
from tests.event_rows import write_event
from tests.test_mqtt import prefix, publisher  # noqa: F401  (fixtures, used by name)

SUBJECT, KEEPER = "Quill Erasure-Subject", "Keeper Other-Person"
pytestmark = pytest.mark.django_db(transaction=True)  # the files go after commit; a fresh process reads


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def vector(seed: int) -> bytes:
    return np.random.default_rng(seed).standard_normal(128).astype("<f4").tobytes()


def crop_of(photo, size: int = 112) -> bytes:
    with Image.open(photo) as image:
        face = image.convert("RGB").resize((size, size))
    buffer = io.BytesIO()
    face.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def with_file(row, field: str, data: bytes):
    getattr(row, field).save("crop.jpg", ContentFile(data), save=False)
    row.save()
    return row


def scenario(staff_client) -> dict:
    """Two people with everything the service can hold about a person; returns their rows' ids."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from events.payloads import event_payload
    from people.models import Person
    from people.services import gallery_create, person_create
    from streams.models import Camera
    from webhooks.models import Delivery, Subscription

    door = gallery_create(name="Door", slug="door")
    subject = person_create(name=SUBJECT, external_id="ERASE-7731", metadata={"team": "north"}, galleries=[door])
    keeper = person_create(name=KEEPER, external_id="KEEP-1", galleries=[door])
    for person, folder in ((subject, "obama"), (keeper, "biden")):
        photos = [upload(p) for p in sorted((TRAIN / folder).iterdir())]
        response = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": photos, "force": "true"})
        assert response.status_code == 201, response.json()
    camera = Camera.objects.create(name="door-cam", source_url="rtsp://cam/1", gallery=door)
    ids: dict = {"subject": subject.pk, "keeper": keeper.pk, "events": {}}
    for who, person, photo, seeds in ((SUBJECT, subject, TRAIN / "obama" / "obama.jpg", (1, 2)),
                                      (KEEPER, keeper, TRAIN / "biden" / "biden.jpg", (3,))):
        ids["events"][who] = [write_event(uid=uuid.uuid4(), camera_id=camera.pk, source_name="door-cam",
                                          person_id=person.pk, track_id=seed, embedding=vector(seed),
                                          crop_jpeg=crop_of(photo, 100 + seed)).pk for seed in seeds]
    stranger = write_event(camera_id=camera.pk, source_name="door-cam", track_id=9, embedding=vector(9),
                           crop_jpeg=crop_of(TRAIN / "rose_leslie" / "img1.jpg"))
    ids["stranger_event"] = stranger.pk

    # Webhook deliveries of their events (written by hand: no receiver is called over the network).
    hook = Subscription.objects.create(name="hook", url="https://hooks.example.com/in", active=False)
    hook.people.set([subject, keeper])
    from events.models import Event

    for event in Event.objects.filter(person__isnull=False).select_related("person", "gallery"):
        Delivery.objects.create(subscription=hook, event=event, event_uid=event.uid, phase="opened",
                                payload=event_payload(event, "opened"), state="delivered")

    if apps.is_installed("corrections"):
        from corrections.models import NegativeFace

        for person, seed in ((subject, 20), (keeper, 21)):
            with_file(NegativeFace(person=person, embedding=vector(seed), model="m", source="event"), "crop",
                      crop_of(TRAIN / "kit_harington" / "john1.jpeg", 90 + seed))

    from unknowns.models import Sighting, UnknownCluster

    now = timezone.now()
    named = UnknownCluster.objects.create(number=1, state="named", person=subject, sighting_count=1,
                                          centroid=vector(31), first_seen=now, last_seen=now)
    still_unknown = UnknownCluster.objects.create(number=2, sighting_count=1, centroid=vector(41), first_seen=now,
                                                  last_seen=now)
    for cluster, matched, seed in ((named, None, 32), (None, subject, 30), (None, keeper, 33),
                                   (still_unknown, None, 40)):
        with_file(Sighting(source="recognition", seen_at=now, embedding=vector(seed), matched_person=matched,
                           cluster=cluster, source_name="api:operator"), "crop",
                  crop_of(TRAIN / "alex_lacamoire" / "img1.jpg", 60 + seed))
    ids["still_unknown"] = still_unknown.pk

    recognized = staff_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()
    assert recognized["top_match"]["person_name"] == SUBJECT

    staff = get_user_model().objects.get(username="operator")
    for person in (subject, keeper):
        LogEntry.objects.create(user=staff, content_type=ContentType.objects.get_for_model(Person),
                                object_id=str(person.pk), object_repr=person.name, action_flag=CHANGE,
                                change_message='[{"changed": {"fields": ["Name"]}}]')
    return ids


def keeper_state(ids) -> dict:
    """What must survive the other person's erasure, unchanged."""
    from django.contrib.admin.models import LogEntry

    from events.models import Event
    from people.models import Face, Person
    from unknowns.models import Sighting, UnknownCluster
    from webhooks.models import Delivery

    keeper = Person.objects.get(pk=ids["keeper"])
    state = {
        "person": (keeper.name, keeper.external_id, sorted(g.slug for g in keeper.galleries.all())),
        "faces": sorted((bytes(f.embedding), f.image.read(), f.thumbnail.read())
                        for f in Face.objects.filter(person=keeper)),
        "events": sorted((bytes(e.embedding), e.crop.read(), e.person_id)
                         for e in Event.objects.filter(pk__in=ids["events"][KEEPER])),
        "stranger": Event.objects.filter(pk=ids["stranger_event"]).exclude(crop="").exists(),
        "sightings": sorted((bytes(s.embedding), s.crop.read())
                            for s in Sighting.objects.filter(matched_person=keeper)),
        "open cluster": (UnknownCluster.objects.filter(pk=ids["still_unknown"]).count(),
                         Sighting.objects.filter(cluster_id=ids["still_unknown"]).count()),
        "deliveries": sorted(d.payload["person_name"] for d in Delivery.objects.filter(event__person=keeper)),
        "admin log": list(LogEntry.objects.filter(object_id=str(keeper.pk)).values_list("object_repr", flat=True)),
    }
    if apps.is_installed("corrections"):
        from corrections.models import NegativeFace

        state["negatives"] = sorted((bytes(n.embedding), n.crop.read()) for n in NegativeFace.objects.filter(
            person=keeper))
    return state


def delete(path: str, pk: int, staff_client, client) -> None:
    from people.models import Person

    if path == "api":
        assert staff_client.delete(f"/api/people/{pk}/").status_code == 204
    elif path == "admin":
        assert client.post(f"/admin/people/person/{pk}/delete/", {"post": "yes"}).status_code == 302
    else:
        Person.objects.filter(pk=pk).delete()


@pytest.mark.parametrize("path", ["api", "admin", "queryset"])
def test_an_erased_person_is_found_nowhere_and_the_other_keeps_everything(
        path, staff_client, browser, engine, media, settings):
    from core.audit.models import AuditRecord
    from people.models import Person

    ids = scenario(staff_client)
    subject = Person.objects.get(pk=ids["subject"])
    trace = erasure_walk.trace_of(subject, media)
    # What is looked for: their 2 faces', 2 events', sightings' and cluster's embeddings (and a
    # negative's), and their photos, thumbnails and crops.
    assert len(trace.embeddings) >= 8 and len(trace.file_hashes) >= 8
    before = erasure_walk.database_hits(trace) + erasure_walk.media_hits(trace, media) + \
        erasure_walk.index_hits(trace)
    assert len(before) > 20 and any("index" in hit for hit in before), "the walk sees them before"
    kept = keeper_state(ids)

    delete(path, subject.pk, staff_client, browser)

    fresh = {**os.environ, **database_env(settings), "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    found = erasure_walk.everything(trace, media, fresh_env=fresh if path == "api" else None)
    assert found == [], "\n".join(found)
    record = AuditRecord.objects.filter(action="person.delete", target_ids=[subject.pk]).get()
    removed = record.details["removed"]
    expected = {"faces": 2, "photos": 2, "thumbnails": 2, "events": 2, "event_crops": 2, "event_embeddings": 2,
                "webhook_deliveries": 2, "sightings": 2, "clusters": 1,
                "admin_log_entries": 2 if path == "admin" else 1}  # the admin logs its own deletion first
    if apps.is_installed("corrections"):
        expected["negatives"] = 1
    assert {key: removed.get(key) for key in expected} == expected, removed
    assert SUBJECT not in str(record.details)
    assert keeper_state(ids) == kept, "the other person keeps everything"
    top = staff_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()["top_match"]
    assert top is None or top["person_name"] != SUBJECT


def test_the_walk_finds_what_it_looks_for(staff_client, engine, media):
    """Each place the walk searches would show a trace left behind: a row naming the person, an
    embedding copied into another row, a copy of a photo, a cache entry."""
    from django.core.cache import cache

    from core.audit.services import audit_record
    from people.models import Face, Person
    from people.services import face_enroll, person_create

    person = person_create(name=SUBJECT)
    face_enroll(person=person, uploads=[upload(TRAIN / "obama" / "obama.jpg")])
    trace = erasure_walk.trace_of(Person.objects.get(pk=person.pk), media)
    face = Face.objects.get(person=person)
    (media / "copy.jpg").write_bytes(face.image.read())
    Face.objects.filter(pk=face.pk).delete()
    Person.objects.filter(pk=person.pk).update(name="renamed")
    audit_record(actor=None, action="test.leak", target_type="", target_ids=[], details={"who": SUBJECT})
    cache.set("leak", {"blob": next(iter(trace.embeddings))})
    found = erasure_walk.everything(trace, media)
    assert any("audit.auditrecord" in hit and SUBJECT in hit for hit in found), found
    assert any(hit.startswith("people.person") for hit in found), found
    assert any("media copy.jpg" in hit for hit in found), found
    assert any("cache" in hit or hit.startswith("redis ") for hit in found), found
    cache.delete("leak")


def test_the_person_export_is_audited_and_complete(staff_client, engine, media):
    """A smoke test of access before erasure (tests/test_privacy_export.py has the rest)."""
    import zipfile

    ids = scenario(staff_client)
    response = staff_client.get(f"/api/people/{ids['subject']}/export/")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = set(archive.namelist())
    assert {"person.json", "events.json", "related/unknowns.sighting.json"} <= names


def test_the_retained_mqtt_name_of_an_erased_person_is_cleared(publisher, prefix):  # noqa: F811
    """A camera's retained "last name seen" is the person's: the erasure clears it (an empty retained
    message); a camera whose last name is someone else's keeps it."""
    from people.services import person_create, person_delete
    from tests.processes import wait_for
    from tests.test_mqtt import PORT, flushed, retained

    ann, bob = person_create(name=SUBJECT), person_create(name=KEEPER)
    write_event(source_name="door", person_id=ann.pk, track_id=1)
    write_event(source_name="gate", person_id=ann.pk, track_id=2)
    write_event(source_name="gate", person_id=bob.pk, track_id=3)
    wait_for(lambda: flushed(publisher), timeout=10, what="acknowledged")
    topics = {topic: m.payload.decode() for topic, m in retained(PORT, f"{prefix}/cameras/#").items()}
    assert topics == {f"{prefix}/cameras/door/person": SUBJECT, f"{prefix}/cameras/gate/person": KEEPER}

    person_delete(person=ann)
    wait_for(lambda: flushed(publisher), timeout=10, what="acknowledged")
    topics = {topic: m.payload.decode() for topic, m in retained(PORT, f"{prefix}/cameras/#").items()}
    assert topics == {f"{prefix}/cameras/gate/person": KEEPER}
