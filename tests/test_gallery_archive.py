"""Gallery export and import (privacy/): an exact round trip (same people, same embedding bytes, same
recognitions), an archive of another model re-encoded from its photos, and every bad archive refused
with a clear 4xx and nothing left behind, in the database or the media folder."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import MISC, TEST, TRAIN, enrol_folder, upload

EXPORT, IMPORT = "/api/galleries/export/", "/api/galleries/import/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def media_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


def exported(client, query: str = "") -> bytes:
    response = client.get(EXPORT + query)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip" and "attachment" in response["Content-Disposition"]
    return b"".join(response.streaming_content)


def send(client, data: bytes, name: str = "gallery.zip"):
    return client.post(IMPORT, {"archive": upload_bytes(data, name)}, format="multipart")


def upload_bytes(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/zip")


def read_manifest(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("manifest.json"))


def rebuild(data: bytes, manifest: dict | None = None, *, replace: dict | None = None) -> bytes:
    """The archive ``data`` with another manifest and/or some entries' bytes replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename == "manifest.json" and manifest is not None:
                body = json.dumps(manifest).encode()
            body = (replace or {}).get(info.filename, body)
            target.writestr(info.filename, body)
    return out.getvalue()


def recognitions(client) -> list[list[tuple[str, float]]]:
    answers = []
    for photo in sorted(TEST.iterdir()):
        body = client.post("/api/faces/recognize/", {"image": upload(photo), "return_all_matches": "true",
                                                     "match_count": 3}).json()
        answers.append([(m["person_name"], m["distance"]) for face in body["faces"] for m in face["matches"]])
    return answers


def snapshot() -> dict:
    """Each person (by name) with what the archive carries."""
    from people.models import Person

    found = {}
    for person in Person.objects.prefetch_related("faces", "galleries"):
        found[person.name] = {
            "external_id": person.external_id, "metadata": person.metadata,
            "galleries": sorted(g.slug for g in person.galleries.all()),
            "faces": sorted((f.sha256, bytes(f.embedding), f.box_top, f.box_right, f.box_bottom, f.box_left,
                             f.detection_score, f.status, f.model, f.image.read(), f.thumbnail.read())
                            for f in person.faces.all()),
        }
    return found


@pytest.fixture
def gallery(db, engine):
    from people.services import gallery_create, person_update

    door = gallery_create(name="Door", slug="door", description="the front door")
    people = enrol_folder(gallery=door)
    person_update(person=people["obama"], external_id="S-0044", metadata={"role": "visitor", "n": [1, 2]})
    return door, people


# ---- the round trips -----------------------------------------------------------------------------

def test_export_erase_import_is_the_same_gallery(staff_client, gallery, media):
    from core.audit.models import AuditRecord
    from people.models import Gallery, Person

    before, answers = snapshot(), recognitions(staff_client)
    archive = exported(staff_client, "?gallery=door")
    manifest = read_manifest(archive)
    assert (manifest["format"], manifest["version"]) == ("facerec-gallery", 1)
    assert manifest["galleries"] == [{"slug": "door", "name": "Door", "description": "the front door"}]
    assert sorted(p["name"] for p in manifest["people"]) == sorted(before)
    face = manifest["people"][0]["faces"][0]
    assert len(base64.b64decode(face["embedding"])) == 512 and face["photo"].startswith("photos/")
    assert AuditRecord.objects.filter(action="gallery.export").count() == 1

    for person in list(Person.objects.all()):
        assert staff_client.delete(f"/api/people/{person.pk}/").status_code == 204
    assert not Person.objects.exists() and recognitions(staff_client) != answers

    response = send(staff_client, archive)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["people"], body["faces"], body["encoded"], body["pending"]) == (5, 9, 9, 0)
    assert body["galleries"] == {"created": [], "reused": ["door"]} and body["job_id"] is None
    assert not body["reencoded"]
    assert {ref: Person.objects.get(pk=pk).name for ref, pk in body["mapping"].items()} == {
        p["ref"]: p["name"] for p in manifest["people"]}
    assert snapshot() == before, "the same people, galleries, photos, thumbnails and embedding bytes"
    assert recognitions(staff_client) == answers, "the same recognitions"
    assert Gallery.objects.count() == 1
    record = AuditRecord.objects.get(action="gallery.import")
    assert sorted(record.target_ids) == sorted(body["mapping"].values()) and record.details["encoded"] == 9


def test_the_whole_service_exports_every_gallery_and_person(staff_client, gallery):
    from people.services import gallery_create, person_create

    gallery_create(name="Empty", slug="empty")
    person_create(name="Nobody in a gallery")
    manifest = read_manifest(exported(staff_client))
    assert [g["slug"] for g in manifest["galleries"]] == ["door", "empty"]
    assert len(manifest["people"]) == 6
    loner = next(p for p in manifest["people"] if p["name"] == "Nobody in a gallery")
    assert (loner["galleries"], loner["faces"]) == ([], [])


def test_an_archive_of_another_model_is_encoded_again_from_its_photos(staff_client, gallery):
    from jobs.services import job_run
    from people.models import Face, Person

    archive = exported(staff_client)
    manifest = read_manifest(archive)
    original = {(p["name"], f["sha256"]): base64.b64decode(f["embedding"])
                for p in manifest["people"] for f in p["faces"]}
    other = copy.deepcopy(manifest)
    other["model_id"] = "some-other-model-v9"
    rng = np.random.default_rng(3)
    for person in other["people"]:
        person["external_id"] = None
        for face in person["faces"]:  # another model's vectors: meaningless here
            face["embedding"] = base64.b64encode(rng.standard_normal(128).astype("<f4").tobytes()).decode()
    Person.objects.all().delete()

    response = send(staff_client, rebuild(archive, other))
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["reencoded"] and body["job_id"] and (body["encoded"], body["pending"]) == (0, 9)
    assert set(Face.objects.values_list("status", flat=True)) == {"pending"}
    job = job_run(body["job_id"])  # the job the answer names (dispatched after commit elsewhere)
    assert (job.state, job.encoded) == ("succeeded", 9)
    for face in Face.objects.select_related("person"):
        got = np.frombuffer(bytes(face.embedding), dtype="<f4")
        want = np.frombuffer(original[(face.person.name, face.sha256)], dtype="<f4")
        assert face.status == "encoded" and np.allclose(got, want, atol=1e-5), "this model's embedding"
    top = staff_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()["top_match"]
    assert top["person_name"] == "obama"


def test_a_restore_on_another_model_is_not_refused_by_the_gate(staff_client, db, engine):
    """A duplicate the source service accepted (forced) and a blurred photo come back encoded: the
    job that encodes an archive of another model records their quality but refuses nothing."""
    from PIL import Image, ImageFilter

    from jobs.services import job_run
    from people.models import Face, Person
    from people.services import face_enroll, person_create

    photo = TRAIN / "obama" / "obama.jpg"
    blurred = io.BytesIO()
    Image.open(photo).convert("RGB").filter(ImageFilter.GaussianBlur(6)).save(blurred, format="JPEG")
    twin = person_create(name="Obama twin")
    for person, data in ((person_create(name="Obama"), photo.read_bytes()), (twin, photo.read_bytes()),
                         (twin, blurred.getvalue())):
        outcome, = face_enroll(person=person, uploads=[upload_bytes(data, "photo.jpg")], force=True)
        assert outcome.face is not None, outcome.error
    assert set(Face.objects.values_list("quality_forced", flat=True)) == {False, True}
    archive = exported(staff_client)
    other = read_manifest(archive)
    other["model_id"] = "some-other-model-v9"
    Person.objects.all().delete()

    body = send(staff_client, rebuild(archive, other)).json()
    job = job_run(body["job_id"])
    assert (job.state, job.encoded) == ("succeeded", 3), job.errors
    faces = list(Face.objects.select_related("person"))
    assert {f.status for f in faces} == {"encoded"}
    blurred_face, = (f for f in faces if "blurry" in f.quality_reasons)  # measured and recorded
    assert blurred_face.person.name == "Obama twin" and blurred_face.quality_forced

# ---- refusals ----------------------------------------------------------------------------------

def small_archive(*, photo: Path = TRAIN / "biden" / "biden.jpg", **face_changes) -> tuple[bytes, dict]:
    """A valid one-person archive of this service's model, built by hand (no engine needed)."""
    from people.engine import embedding_model_id

    data = photo.read_bytes()
    face = {"photo": "photos/1.jpg", "sha256": hashlib.sha256(data).hexdigest(),
            "box": {"top": 10, "right": 90, "bottom": 90, "left": 10}, "detection_score": 1.5,
            "embedding": base64.b64encode(np.linspace(-0.2, 0.2, 128).astype("<f4").tobytes()).decode()}
    face.update(face_changes)
    manifest = {"format": "facerec-gallery", "version": 1, "model_id": embedding_model_id(),
                "exported_at": "2026-01-02T03:04:05+00:00",
                "galleries": [{"slug": "door", "name": "Door", "description": ""}],
                "people": [{"ref": "7", "name": "Biden", "external_id": "S-1", "metadata": {}, "galleries": ["door"],
                            "faces": [face]}]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photos/1.jpg", data)
        archive.writestr("manifest.json", json.dumps(manifest))
    return out.getvalue(), manifest


def with_entry(data: bytes, info: zipfile.ZipInfo | str, body: bytes) -> bytes:
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(info, body)
    return out.getvalue()


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def changed(**changes):
    def apply(manifest: dict) -> dict:
        manifest = copy.deepcopy(manifest)
        for path, value in changes.items():
            *parents, last = path.split(".")
            node = manifest
            for key in parents:
                node = node[int(key)] if key.isdigit() else node[key]
            node[int(last) if last.isdigit() else last] = value
        return manifest
    return apply


def zip_bomb(data: bytes) -> bytes:
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as archive:  # 5 MB of zeros: deflated to a few kilobytes
        archive.writestr(zipfile.ZipInfo("photos/bomb.jpg"), b"\0" * 5_000_000, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def bad_photo(data: bytes) -> bytes:
    text = b"this is not an image at all"
    manifest = changed(**{"people.0.faces.0.sha256": hashlib.sha256(text).hexdigest()})(read_manifest(data))
    return rebuild(data, manifest, replace={"photos/1.jpg": text})


NAN = base64.b64encode(np.full(128, np.nan, dtype="<f4").tobytes()).decode()
CASES = {
    # name: (how the valid archive is spoiled, status, code)
    "not a zip": (lambda data: b"just some text, no archive", 400, "invalid_archive"),
    "truncated": (lambda data: data[: len(data) // 2], 400, "invalid_archive"),
    "too large": (lambda data: data + b"\0" * 5000, 413, "archive_too_large"),
    "too many entries": (lambda data: with_entry(with_entry(data, "a.txt", b"a"), "b.txt", b"b"), 413,
                         "archive_too_large"),
    "zip bomb entry": (zip_bomb, 413, "archive_too_large"),
    "dot-dot path": (lambda data: with_entry(data, "../evil", b"x"), 400, "unsafe_path"),
    "dot-dot inside": (lambda data: with_entry(data, "photos/../../evil.jpg", b"x"), 400, "unsafe_path"),
    "absolute path": (lambda data: with_entry(data, "/tmp/evil", b"x"), 400, "unsafe_path"),
    "backslashes": (lambda data: with_entry(data, "photos\\..\\evil", b"x"), 400, "unsafe_path"),
    "drive letter": (lambda data: with_entry(data, "C:/evil", b"x"), 400, "unsafe_path"),
    "symbolic link": (lambda data: with_entry(data, symlink("photos/2.jpg"), b"/etc/passwd"), 400, "unsafe_path"),
    "duplicate name": (lambda data: with_entry(data, "photos/1.jpg", b"x"), 400, "unsafe_path"),
    "missing manifest": (lambda data: _without(data, "manifest.json"), 400, "invalid_manifest"),
    "bad JSON": (lambda data: rebuild(data, replace={"manifest.json": b'{"format": "facerec-gallery",'}), 400,
                 "invalid_manifest"),
    "repeated key": (lambda data: rebuild(data, replace={"manifest.json": b'{"version": 1, "version": 1}'}), 400,
                     "invalid_manifest"),
    "not a gallery archive": (lambda data: rebuild(data, changed(format="other")(read_manifest(data))), 400,
                              "invalid_manifest"),
    "wrong version": (lambda data: rebuild(data, changed(version=2)(read_manifest(data))), 400,
                      "unsupported_version"),
    "unknown key": (lambda data: rebuild(data, changed(**{"people.0.extra": 1})(read_manifest(data))), 400,
                    "invalid_manifest"),
    "name not a string": (lambda data: rebuild(data, changed(**{"people.0.name": 5})(read_manifest(data))), 400,
                          "invalid_manifest"),
    "photo sha mismatch": (lambda data: rebuild(data, changed(**{"people.0.faces.0.sha256": "0" * 64})(
        read_manifest(data))), 400, "checksum_mismatch"),
    "photo missing": (lambda data: _without(data, "photos/1.jpg"), 400, "invalid_archive"),
    "embedding too short": (lambda data: rebuild(data, changed(**{"people.0.faces.0.embedding": base64.b64encode(
        b"\0" * 508).decode()})(read_manifest(data))), 400, "invalid_manifest"),
    "embedding NaN": (lambda data: rebuild(data, changed(**{"people.0.faces.0.embedding": NAN})(
        read_manifest(data))), 400, "invalid_manifest"),
    "embedding not base64": (lambda data: rebuild(data, changed(**{"people.0.faces.0.embedding": "@@@"})(
        read_manifest(data))), 400, "invalid_manifest"),
    "photo not an image": (bad_photo, 400, "invalid_photo"),
    "unknown gallery of a person": (lambda data: rebuild(data, changed(**{"people.0.galleries": ["nope"]})(
        read_manifest(data))), 400, "invalid_manifest"),
}


def _without(data: bytes, name: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info.filename))
    return out.getvalue()


def nothing_written(before_media: dict, media: Path) -> None:
    from core.audit.models import AuditRecord
    from jobs.models import Job
    from people.models import Face, Gallery, Person

    assert (Person.objects.count(), Face.objects.count(), Gallery.objects.count(), Job.objects.count()) == (1, 0, 0, 0)
    assert not AuditRecord.objects.filter(action="gallery.import").exists()
    assert media_files(media) == before_media


@pytest.fixture
def resident(db):
    from people.services import person_create

    return person_create(name="Resident", external_id="S-1")  # the one whose external_id conflicts


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_archive_is_refused_and_leaves_nothing(staff_client, resident, media, settings, case):
    spoil, status, code = CASES[case]
    good, _ = small_archive()
    if case == "too large":
        settings.IMPORT_MAX_BYTES = len(good) + 1000
    if case == "too many entries":
        settings.IMPORT_MAX_ENTRIES = 3
    before = media_files(media)
    response = send(staff_client, spoil(good))
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.json()
    assert response.json()["success"] is False and response.json()["error"]["message"]
    if case == "zip bomb entry":
        assert "zip bomb" in response.json()["error"]["message"], "refused for its ratio, not its size"
    nothing_written(before, media)


def test_an_external_id_in_use_is_a_conflict_naming_it(staff_client, resident, media):
    good, _ = small_archive()
    response = send(staff_client, good)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "external_id_conflict"
    assert error["details"]["conflicts"] == [{"ref": "7", "external_id": "S-1", "person_id": resident.pk}]
    nothing_written({}, media)


def test_the_valid_hand_made_archive_imports(staff_client, db, media):
    """The refusals above differ from an accepted archive only by what each spoils."""
    from people.models import Face

    good, manifest = small_archive()
    response = send(staff_client, good)
    assert response.status_code == 201, response.json()
    face = Face.objects.get()
    assert bytes(face.embedding) == base64.b64decode(manifest["people"][0]["faces"][0]["embedding"])
    assert face.image.read() == (TRAIN / "biden" / "biden.jpg").read_bytes() and face.status == "encoded"
    assert response.json()["galleries"] == {"created": ["door"], "reused": []}


def test_a_failure_while_writing_deletes_the_files_already_written(staff_client, db, media, monkeypatch):
    import privacy.services

    def fail(**kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(privacy.services, "audit_record", fail)  # the last step of the transaction
    good, _ = small_archive()
    with pytest.raises(RuntimeError):
        send(staff_client, good)
    from people.models import Face, Gallery, Person

    assert (Person.objects.count(), Face.objects.count(), Gallery.objects.count()) == (0, 0, 0)
    assert media_files(media) == {}


def test_who_may_export_and_import(user_client, anon_client, staff_client, db):
    good, _ = small_archive()
    assert user_client.get(EXPORT).status_code == 403
    assert send(user_client, good).status_code == 403
    assert anon_client.get(EXPORT).status_code == 401
    assert send(anon_client, good).status_code == 401
    assert staff_client.get(EXPORT + "?gallery=nope").json()["error"]["code"] == "unknown_gallery"
    assert staff_client.post(IMPORT, {"archive": "x"}, format="json").status_code == 415
    missing = staff_client.post(IMPORT, {}, format="multipart")
    assert missing.status_code == 400 and "archive" in missing.json()["error"]["details"]


def test_an_unreadable_photo_is_left_out_of_the_export(staff_client, db, engine, media):
    from people.models import Face
    from people.services import face_enroll, person_create

    person = person_create(name="Obama")
    face_enroll(person=person, uploads=[upload(TRAIN / "obama" / "obama.jpg")])
    face_enroll(person=person, uploads=[upload(MISC / "obama2.jpg")])
    gone = Face.objects.order_by("id").first()
    (media / gone.image.name).unlink()
    manifest = read_manifest(exported(staff_client))
    assert [f["sha256"] for f in manifest["people"][0]["faces"]] == [Face.objects.order_by("id").last().sha256]
