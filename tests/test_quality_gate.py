"""The enrolment gate: real photos made bad are refused with their reason (422, nothing kept),
force stores them with warnings, the duplicate check, the asynchronous path, enrolment from bytes,
and the admin's quality columns. Real engine, real database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from conftest import TRAIN, upload

OBAMA = TRAIN / "obama" / "obama.jpg"
LFW = Path(__file__).resolve().parents[2] / "shared" / "lfw-dev" / "images"
REASON_KEYS = {"face_size", "sharpness", "yaw", "pitch", "roll", "detection_score", "cut_off", "eye_distance"}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _obama() -> Image.Image:
    return Image.open(OBAMA).convert("RGB")


def bad_photo(kind: str) -> bytes:
    """The Obama training photo (which passes) made bad in one way."""
    photo = _obama()
    if kind == "face_too_small":
        return _jpeg(photo.resize((round(photo.width * 0.15), round(photo.height * 0.15)), Image.Resampling.LANCZOS))
    if kind == "blurry":
        return _jpeg(photo.filter(ImageFilter.GaussianBlur(8)))
    if kind == "cut_off":  # the right edge of the photo runs through the face
        return _jpeg(photo.crop((0, 0, round(photo.width * 0.6), photo.height)))
    if kind == "rolled":  # turned 40° in the picture plane
        return _jpeg(photo.rotate(40, expand=True, fillcolor=(128, 128, 128)))
    if kind == "turned":  # a real face turned ~57° away (LFW)
        return (LFW / "George_Allen_0001.jpg").read_bytes()
    if kind == "unsure":  # a real face the detector scores 0.002 (LFW)
        return (LFW / "Bill_OReilly_0001.jpg").read_bytes()
    raise ValueError(kind)


def _file(data: bytes, name: str = "photo.jpg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/jpeg")


@pytest.fixture
def person(db):
    from people.services import person_create

    return person_create(name="Obama")


def _url(person) -> str:
    return f"/api/people/{person.pk}/faces/"


def _stored_files(person) -> list[Path]:
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    return sorted(p for folder in ("faces", "thumbs") for p in (root / folder / str(person.pk)).glob("*"))


@pytest.mark.parametrize("kind,code", [
    ("face_too_small", "face_too_small"),
    ("blurry", "blurry"),
    ("cut_off", "cut_off"),
    ("rolled", "extreme_pose"),
    ("turned", "extreme_pose"),
    ("unsure", "low_confidence"),
])
def test_a_bad_photo_is_refused_with_its_reason_and_nothing_is_kept(staff_client, person, engine, kind, code):
    before = _stored_files(person)  # media outlives each test's rolled-back rows: another test's person had this id
    response = staff_client.post(_url(person), {"image": _file(bad_photo(kind))})
    assert response.status_code == 422, response.json()
    error = response.json()["error"]
    assert error["code"] == code and error["details"]["reasons"][0] == code
    assert set(error["details"]["quality"]) == REASON_KEYS
    assert "force=true" in error["message"]
    assert person.faces.count() == 0 and _stored_files(person) == before


def test_reasons_come_in_order_and_each_one_names_its_measure(staff_client, person, engine):
    photo = _obama()
    small_and_blurred = photo.resize((photo.width // 7, photo.height // 7)).filter(ImageFilter.GaussianBlur(2))
    error = staff_client.post(_url(person), {"image": _file(_jpeg(small_and_blurred))}).json()["error"]
    assert error["details"]["reasons"][:2] == ["face_too_small", "blurry"]
    assert error["code"] == "face_too_small" and "px across" in error["message"]
    quality = error["details"]["quality"]
    assert quality["face_size"] < 40 and quality["sharpness"] < 3


def test_low_confidence_follows_the_setting(staff_client, person, engine, settings):
    settings.QUALITY_MIN_DETECTION_SCORE = 5.0  # no real face scores this high
    response = staff_client.post(_url(person), {"image": upload(OBAMA)})
    assert response.status_code == 422 and response.json()["error"]["code"] == "low_confidence"
    settings.QUALITY_GATE = False  # the gate off: recorded, not refused
    response = staff_client.post(_url(person), {"image": upload(OBAMA)})
    assert response.status_code == 201
    face = response.json()
    assert face["quality"]["reasons"] == ["low_confidence"] and face["quality"]["forced"] is False
    assert face["warnings"] == []


def test_the_training_photos_pass_and_show_their_quality_record(staff_client, enrolled):
    from people.models import Face

    faces = list(Face.objects.all())
    assert len(faces) == 9 and all(f.quality_reasons == [] and not f.quality_forced for f in faces)
    record = staff_client.get(f"/api/faces/{faces[0].pk}/").json()["quality"]
    assert record["face_size"] > 40 and record["sharpness"] > 3 and record["cut_off"] == 0
    assert abs(record["yaw"]) < 45 and record["detection_score"] == faces[0].detection_score


def test_force_stores_a_bad_photo_with_warnings(staff_client, person, engine):
    from core.audit.models import AuditRecord

    response = staff_client.post(_url(person), {"image": _file(bad_photo("cut_off")), "force": "true"})
    assert response.status_code == 201
    face = response.json()
    assert face["status"] == "encoded" and face["has_embedding"]
    assert [w["code"] for w in face["warnings"]] == ["cut_off"]
    assert "outside the photo" in face["warnings"][0]["message"]
    assert face["quality"]["reasons"] == ["cut_off"] and face["quality"]["forced"] is True
    assert face["quality"]["cut_off"] > 0.1
    record = AuditRecord.objects.filter(action="face.enrol").latest("pk")
    assert record.details["force"] is True and record.details["faces"][0]["overridden"] == ["cut_off"]
    # A good photo with force: nothing overridden, not marked forced.
    good = staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama2.jpg"), "force": "true"}).json()
    assert good["warnings"] == [] and good["quality"]["forced"] is False


def test_several_files_each_get_their_reason(staff_client, person, engine):
    files = [upload(OBAMA), _file(bad_photo("blurry"), "blurred.jpg"), _file(bad_photo("cut_off"), "cut.jpg")]
    response = staff_client.post(_url(person), {"image": files})
    assert response.status_code == 207
    results = response.json()["results"]
    assert results[0]["success"] and results[0]["warnings"] == []
    assert [r["error"]["code"] for r in results[1:]] == ["blurry", "cut_off"]
    assert results[1]["filename"] == "blurred.jpg" and results[1]["error"]["details"]["reasons"] == ["blurry"]
    assert person.faces.count() == 1
    none = staff_client.post(_url(person), {"image": [_file(bad_photo("blurry"), "a.jpg"),
                                                      _file(bad_photo("face_too_small"), "b.jpg")]})
    assert none.status_code == 422 and person.faces.count() == 1


def test_a_face_of_someone_else_is_a_possible_duplicate(staff_client, person, engine):
    from people.services import person_create

    enrolled = staff_client.post(_url(person), {"image": upload(OBAMA)}).json()
    other = person_create(name="Barack")
    response = staff_client.post(_url(other), {"image": upload(TRAIN / "obama" / "obama2.jpg")})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "possible_duplicate" and "Obama" in error["message"]
    details = error["details"]
    assert (details["person_id"], details["person_name"], details["face_id"]) == (person.pk, "Obama", enrolled["id"])
    assert 0 < details["distance"] < 0.6
    assert other.faces.count() == 0
    # The same person's own faces are no duplicate; forced, the answer warns.
    assert staff_client.post(_url(person), {"image": upload(TRAIN / "obama" / "obama2.jpg")}).status_code == 201
    forced = staff_client.post(_url(other), {"image": upload(TRAIN / "obama" / "obama2.jpg"), "force": "true"})
    assert forced.status_code == 201
    warning = forced.json()["warnings"][0]
    assert warning["code"] == "possible_duplicate" and warning["person_id"] == person.pk
    assert forced.json()["quality"]["forced"] is True
    # Someone else entirely is no duplicate.
    biden = person_create(name="Biden")
    assert staff_client.post(_url(biden), {"image": upload(TRAIN / "biden" / "biden.jpg")}).status_code == 201


def test_enrol_from_bytes_goes_through_the_same_gate(person, engine):
    from people.models import Face
    from people.services import face_enroll_bytes

    outcomes = face_enroll_bytes(person=person, blobs=[("crop.jpg", OBAMA.read_bytes()),
                                                       ("blurred.jpg", bad_photo("blurry"))])
    assert outcomes[0].face is not None and outcomes[0].face.status == Face.Status.ENCODED
    assert outcomes[1].face is None and outcomes[1].error.error_code == "blurry"
    assert outcomes[1].error.status_code == 422 and outcomes[1].filename == "blurred.jpg"
    forced = face_enroll_bytes(person=person, blobs=[("blurred.jpg", bad_photo("blurry"))], force=True)[0]
    assert forced.face.quality_forced and forced.face.quality_reasons == ["blurry"]
    assert [w["code"] for w in forced.warnings] == ["blurry"]
    again = face_enroll_bytes(person=person, blobs=[("same.jpg", OBAMA.read_bytes())])[0]
    assert again.duplicate and again.face.pk == outcomes[0].face.pk
    empty = face_enroll_bytes(person=person, blobs=[("empty.jpg", b"")])[0]
    assert empty.error is not None and 400 <= empty.error.status_code < 500
    assert person.faces.count() == 2


@pytest.mark.django_db(transaction=True)
def test_async_enrolment_applies_the_gate_in_the_job(engine):
    from django.contrib.auth import get_user_model

    from conftest import make_client
    from jobs.backends import wait_idle
    from people.models import Face
    from people.services import person_create

    client = make_client(get_user_model().objects.create_user("op", password="x", is_staff=True))
    person = person_create(name="Obama")
    body = client.post(_url(person), {"async": "true", "image": [upload(OBAMA),
                                                                 _file(bad_photo("blurry"), "blurred.jpg")]}).json()
    wait_idle()
    job = client.get(f"/api/jobs/{body['job_id']}/").json()
    assert job["state"] == "succeeded" and (job["encoded"], job["failed"]) == (1, 1)
    assert job["errors"][0]["message"].startswith("blurry: ")
    refused = Face.objects.get(pk=body["results"][1]["face"]["id"])
    assert refused.status == Face.Status.REFUSED and refused.quality_reasons == ["blurry"]
    assert not refused.embedding and refused.error.startswith("blurry: ")
    listed = client.get(_url(person), {"status": "refused"}).json()
    assert [f["id"] for f in listed] == [refused.pk] and listed[0]["quality"]["reasons"] == ["blurry"]

    # Re-encoding everything (a model change) does not let the refused face in.
    from jobs.services import regenerate_all_encodings

    regenerate_all_encodings()
    wait_idle()
    refused.refresh_from_db()
    assert refused.status == Face.Status.REFUSED

    forced = client.post(_url(person), {"async": "true", "force": "true",
                                        "image": [_file(bad_photo("cut_off"), "cut.jpg")]}).json()
    wait_idle()
    face = Face.objects.get(pk=forced["results"][0]["face"]["id"])
    assert face.status == Face.Status.ENCODED and face.quality_forced and face.quality_reasons == ["cut_off"]


@pytest.mark.django_db(transaction=True)
def test_admin_sorts_and_filters_by_quality_and_forces_refused_faces(engine):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from jobs.backends import wait_idle
    from people.models import Face
    from people.services import face_enroll, face_enroll_bytes, person_create

    admin_user = get_user_model().objects.create_superuser("site-admin", "", "site-admin-pass-123")
    browser = Client()
    browser.force_login(admin_user)
    person = person_create(name="Obama")
    face_enroll(person=person, uploads=[upload(OBAMA), upload(TRAIN / "obama" / "obama2.jpg")])
    face_enroll_bytes(person=person, blobs=[("cut.jpg", bad_photo("cut_off"))], force=True)
    refused = face_enroll(person=person, uploads=[_file(bad_photo("blurry"), "blurred.jpg")], run_async=True)[0].face
    from people.services import face_encode_many

    face_encode_many(face_ids=[refused.pk])
    assert Face.objects.get(pk=refused.pk).status == Face.Status.REFUSED

    from people.admin import FaceAdmin

    column = FaceAdmin.list_display.index("sharpness") + 1
    for order, reverse in ((str(column), False), (f"-{column}", True)):
        page = browser.get("/admin/people/face/", {"o": order})
        assert page.status_code == 200
        shown = [f.quality_sharpness for f in page.context["cl"].result_list]
        assert shown == sorted(shown, reverse=reverse) and len(shown) == 4
    cut = browser.get("/admin/people/face/", {"quality": "cut_off"})
    assert [f.quality_reasons for f in cut.context["cl"].result_list] == [["cut_off"]]
    assert len(browser.get("/admin/people/face/", {"quality": "ok"}).context["cl"].result_list) == 2
    assert len(browser.get("/admin/people/face/", {"quality": "forced"}).context["cl"].result_list) == 1
    forced_face = Face.objects.get(quality_forced=True)
    detail = browser.get(f"/admin/people/face/{forced_face.pk}/change/").content.decode()
    assert "Quality record" in detail and "<th>fails</th><td>cut_off</td>" in detail and "<th>sharpness</th>" in detail
    assert "Obama" in browser.get(f"/admin/people/person/{person.pk}/change/").content.decode()

    # Forcing the refused face from the admin encodes it.
    response = browser.post("/admin/people/face/", {"action": "force_refused", "_selected_action": [refused.pk]})
    assert response.status_code == 302
    wait_idle()
    refused.refresh_from_db()
    assert refused.status == Face.Status.ENCODED and refused.quality_forced and refused.quality_reasons == ["blurry"]
