"""The right of access: GET /api/people/{id}/export/ answers one zip archive of everything stored about
the person (their record, photos, thumbnails, boxes, quality, embeddings, events with crops, and other
apps' rows about them), streamed, audited; staff only; nobody else's data in it."""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from conftest import MISC, TRAIN, upload
from tests.event_rows import write_event


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def vector(seed: int) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).standard_normal(128).astype("<f4").tobytes()


def jpeg(photo=MISC / "obama.jpg") -> bytes:
    from PIL import Image

    with Image.open(photo) as image:
        crop = image.convert("RGB").resize((96, 96))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def ada(db, engine):
    from people.services import face_enroll, gallery_create, person_create
    from unknowns.models import Sighting

    door = gallery_create(name="Door", slug="door")
    ada = person_create(name="Ada", external_id="A-1", metadata={"desk": 4}, galleries=[door])
    bob = person_create(name="Bob")
    face_enroll(person=ada, uploads=[upload(TRAIN / "obama" / "obama.jpg"), upload(TRAIN / "obama" / "obama2.jpg")])
    face_enroll(person=bob, uploads=[upload(TRAIN / "biden" / "biden.jpg")])
    write_event(uid=uuid.uuid4(), person_id=ada.pk, embedding=vector(1), crop_jpeg=jpeg())
    write_event(uid=uuid.uuid4(), person_id=bob.pk, embedding=vector(2), crop_jpeg=jpeg(TRAIN / "biden" / "biden.jpg"))
    sighting = Sighting(source="recognition", seen_at=timezone.now(), embedding=vector(3), matched_person=ada)
    sighting.crop.save("crop.jpg", ContentFile(jpeg()), save=False)
    sighting.save()
    return ada


def archive_of(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.content[:300]
    assert response.streaming and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="person-')
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_a_person_export_holds_all_their_data_and_only_theirs(staff_client, ada):
    from core.audit.models import AuditRecord
    from events.models import Event
    from people.models import Face

    archive = archive_of(staff_client.get(f"/api/people/{ada.pk}/export/"))
    document = json.loads(archive.read("person.json"))
    assert document["person"]["name"] == "Ada" and document["person"]["external_id"] == "A-1"
    assert document["person"]["metadata"] == {"desk": 4}
    assert [g["slug"] for g in document["person"]["galleries"]] == ["door"]
    faces = {f.pk: f for f in Face.objects.filter(person=ada)}
    assert sorted(f["id"] for f in document["faces"]) == sorted(faces)
    for row in document["faces"]:
        face = faces[row["id"]]
        assert base64.b64decode(row["embedding"]) == bytes(face.embedding), "float32 little-endian, as stored"
        assert archive.read(row["photo"]) == face.image.read()
        assert archive.read(row["thumbnail"]) == face.thumbnail.read()
        assert row["box"] == face.box and row["sha256"] == face.sha256
        assert isinstance(row["quality"], dict)
    events = json.loads(archive.read("events.json"))
    event = Event.objects.get(person=ada)
    assert [e["id"] for e in events] == [event.pk] and events[0]["person_name"] == "Ada"
    assert base64.b64decode(events[0]["embedding"]) == bytes(event.embedding)
    assert archive.read(events[0]["crop"]) == event.crop.read()
    sightings = json.loads(archive.read("related/unknowns.sighting.json"))
    assert len(sightings) == 1 and base64.b64decode(sightings[0]["embedding"]) == vector(3)
    assert archive.read(sightings[0]["crop"]) == jpeg()
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"Bob" not in everything and base64.b64encode(vector(2)) not in everything
    assert not any(name.endswith((".npy", ".pkl", ".pickle")) for name in archive.namelist())
    record = AuditRecord.objects.get(action="person.export")
    assert record.target_ids == [ada.pk] and record.details["faces"] == 2 and record.details["events"] == 1


def test_who_may_export_a_person(staff_client, user_client, anon_client, ada):
    url = f"/api/people/{ada.pk}/export/"
    assert user_client.get(url).status_code == 403
    assert anon_client.get(url).status_code == 401
    missing = staff_client.get("/api/people/987654/export/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
