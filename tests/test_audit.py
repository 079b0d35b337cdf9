"""The audit trail: one record per write and per recognition, in the write's transaction; the
staff-only list with its filters; the read-only admin. Real photos, real weights, real database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.test import Client
from django.utils import timezone

from conftest import MISC, TEST, TRAIN, enrol_folder, make_client, upload
from core.audit.models import AuditRecord
from core.audit.services import audit_record
from people.models import Face, Gallery, Person
from people.services import face_enroll, person_create, person_delete

LICENSE = TRAIN / ".." / ".." / "LICENSE"


# ---- helpers ---------------------------------------------------------------------------------

def mark() -> int:
    """The newest record's id: what a test writes after this is what it caused."""
    return AuditRecord.objects.aggregate(last=Max("id"))["last"] or 0


def since(marker: int) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(id__gt=marker).order_by("id"))


def only(marker: int) -> AuditRecord:
    records = since(marker)
    assert len(records) == 1, [(r.action, r.target_ids) for r in records]
    return records[0]


def request_id() -> str:
    return str(uuid.uuid4())


def assert_record(record: AuditRecord, *, action: str, actor, target_type: str, target_ids, rid: str) -> None:
    assert (record.action, record.target_type, record.target_ids) == (action, target_type, list(target_ids))
    assert record.actor == actor and record.actor_name == actor.get_username()
    assert record.request_id == rid, "X-Request-ID not recorded: is core.middleware installed?"


@pytest.fixture
def person(db):
    return person_create(name="Obama")


@pytest.fixture
def people(db, engine):
    """One photo per person of people/train."""
    return enrol_folder(first_only=True)


# ---- writes through the API ------------------------------------------------------------------

def test_gallery_create_update_delete_each_leave_one_record(staff_client, staff):
    rid, before = request_id(), mark()
    created = staff_client.post("/api/galleries/", {"name": "Door", "slug": "door"}, format="json",
                                HTTP_X_REQUEST_ID=rid)
    assert created.status_code == 201
    pk = created.json()["id"]
    record = only(before)
    assert_record(record, action="gallery.create", actor=staff, target_type="gallery", target_ids=[pk], rid=rid)
    assert record.details == {"slug": "door"}

    rid, before = request_id(), mark()
    assert staff_client.patch(f"/api/galleries/{pk}/", {"name": "Front door"}, format="json",
                              HTTP_X_REQUEST_ID=rid).status_code == 200
    record = only(before)
    assert_record(record, action="gallery.update", actor=staff, target_type="gallery", target_ids=[pk], rid=rid)
    assert record.details == {"fields": ["name"]}

    rid, before = request_id(), mark()
    assert staff_client.delete(f"/api/galleries/{pk}/", HTTP_X_REQUEST_ID=rid).status_code == 204
    assert_record(only(before), action="gallery.delete", actor=staff, target_type="gallery", target_ids=[pk],
                  rid=rid)


def test_person_create_update_delete_each_leave_one_record(staff_client, staff):
    gallery = Gallery.objects.create(name="Class A", slug="class-a")
    rid, before = request_id(), mark()
    created = staff_client.post("/api/people/", {"name": "Ada", "galleries": ["class-a"]}, format="json",
                                HTTP_X_REQUEST_ID=rid)
    assert created.status_code == 201
    pk = created.json()["id"]
    record = only(before)
    assert_record(record, action="person.create", actor=staff, target_type="person", target_ids=[pk], rid=rid)
    assert record.details == {"galleries": [gallery.pk]}
    assert "Ada" not in str(record.details)  # ids, never names

    rid, before = request_id(), mark()
    assert staff_client.patch(f"/api/people/{pk}/", {"name": "Ada L.", "galleries": []}, format="json",
                              HTTP_X_REQUEST_ID=rid).status_code == 200
    record = only(before)
    assert_record(record, action="person.update", actor=staff, target_type="person", target_ids=[pk], rid=rid)
    assert record.details == {"fields": ["name"], "galleries": []}

    rid, before = request_id(), mark()
    assert staff_client.delete(f"/api/people/{pk}/", HTTP_X_REQUEST_ID=rid).status_code == 204
    assert_record(only(before), action="person.delete", actor=staff, target_type="person", target_ids=[pk],
                  rid=rid)


def test_enrolment_and_face_delete_leave_one_record_each(staff_client, staff, person, engine):
    rid, before = request_id(), mark()
    files = [upload(TRAIN / "obama" / "obama.jpg"), upload(MISC / "two_people.jpg")]
    response = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": files}, HTTP_X_REQUEST_ID=rid)
    assert response.status_code == 207  # one enrolled, one refused
    face_id = response.json()["results"][0]["face"]["id"]
    record = only(before)
    assert_record(record, action="face.enrol", actor=staff, target_type="face", target_ids=[face_id], rid=rid)
    assert record.details == {"person_id": person.pk, "async": False, "faces": [
        {"face_id": face_id, "duplicate": False, "status": "encoded"},
        {"face_id": None, "duplicate": False, "status": "multiple_faces"},
    ]}

    rid, before = request_id(), mark()
    assert staff_client.delete(f"/api/faces/{face_id}/", HTTP_X_REQUEST_ID=rid).status_code == 204
    record = only(before)
    assert_record(record, action="face.delete", actor=staff, target_type="face", target_ids=[face_id], rid=rid)
    assert record.details == {"person_id": person.pk}


@pytest.mark.django_db(transaction=True)
def test_async_enrolment_and_its_job_are_audited_under_the_request(engine):
    from jobs.backends import wait_idle

    staff = get_user_model().objects.create_user("ops", password="x", is_staff=True)
    person = person_create(name="Obama")
    rid, before = request_id(), mark()
    photos = [upload(TRAIN / "obama" / "obama.jpg"), upload(TRAIN / "obama" / "obama2.jpg")]
    response = make_client(staff).post(f"/api/people/{person.pk}/faces/", {"image": photos, "async": "true"},
                                       HTTP_X_REQUEST_ID=rid)
    assert response.status_code == 202
    wait_idle()
    ids = sorted(Face.objects.filter(person=person).values_list("id", flat=True))
    enrol, encode = since(before)
    assert_record(enrol, action="face.enrol", actor=staff, target_type="face", target_ids=ids, rid=rid)
    assert enrol.details["async"] is True and {f["status"] for f in enrol.details["faces"]} == {"pending"}
    # The job's writes are recorded under whoever queued it, with the queuing request's id.
    assert_record(encode, action="face.encode", actor=staff, target_type="face", target_ids=ids, rid=rid)
    assert encode.details == {"statuses": {str(i): "encoded" for i in ids}, "job_id": response.json()["job_id"]}


def test_a_duplicate_or_refused_enrolment_writes_nothing_and_leaves_no_record(staff_client, person, engine):
    face_enroll(person=person, uploads=[upload(TRAIN / "obama" / "obama.jpg")])
    before = mark()
    url = f"/api/people/{person.pk}/faces/"
    assert staff_client.post(url, {"image": upload(TRAIN / "obama" / "obama.jpg")}).status_code == 200
    assert staff_client.post(url, {"image": upload(MISC / "two_people.jpg")}).status_code == 422
    assert staff_client.post(url, {"image": upload(LICENSE, name="x.jpg")}).status_code == 400
    assert since(before) == []


def test_a_refused_request_leaves_no_record(staff_client, user_client, db):
    Gallery.objects.create(name="Door", slug="door")
    before = mark()
    assert staff_client.post("/api/people/", {}, format="json").status_code == 400
    assert staff_client.post("/api/people/", {"name": "A", "galleries": ["nope"]}, format="json").status_code == 400
    assert staff_client.post("/api/galleries/", {"name": "Door", "slug": "door"}, format="json").status_code == 400
    assert user_client.post("/api/galleries/", {"name": "X", "slug": "x"}, format="json").status_code == 403
    assert since(before) == []


def test_a_rolled_back_write_leaves_no_record(person, monkeypatch):
    before = mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        person_create(name="Grace")
        raise RuntimeError("the caller's transaction fails after the write")
    assert since(before) == [] and not Person.objects.filter(name="Grace").exists()

    import people.services

    real_record = people.services.audit_record

    def record_then_fail(**kwargs):
        real_record(**kwargs)
        raise RuntimeError("the write fails after its record was written")

    monkeypatch.setattr(people.services, "audit_record", record_then_fail)
    pk = person.pk
    with pytest.raises(RuntimeError):
        person_delete(person=person)
    assert since(before) == [] and Person.objects.filter(pk=pk).exists()  # both rolled back


def test_services_called_without_a_request_record_no_actor(db):
    before = mark()
    person = person_create(name="Ada")
    record = only(before)
    assert (record.action, record.actor, record.actor_name, record.request_id) == ("person.create", None, "", "")
    assert record.target_ids == [person.pk]


def test_the_actor_name_outlives_the_user(db):
    someone = get_user_model().objects.create_user("temp", password="x", is_staff=True)
    record = audit_record(actor=someone, action="person.create", target_type="person", target_ids=[1])
    someone.delete()
    record.refresh_from_db()
    assert (record.actor, record.actor_name) == (None, "temp")


# ---- recognitions ----------------------------------------------------------------------------

def test_recognition_records_the_people_recognised(user_client, user, people):
    rid, before = request_id(), mark()
    response = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama_and_biden.jpg")},
                                HTTP_X_REQUEST_ID=rid)
    assert response.status_code == 200
    faces = response.json()["faces"]
    matched = [f["top_match"]["person_id"] for f in faces if f["top_match"]]
    assert {people["obama"].pk, people["biden"].pk} <= set(matched)
    record = only(before)
    assert_record(record, action="recognition.recognize", actor=user, target_type="person",
                  target_ids=sorted(set(matched)), rid=rid)
    assert record.details == {"images": 1, "failed_images": 0, "faces": len(faces), "matched_person_ids": matched,
                              "unknown": len(faces) - len(matched), "gallery_id": None, "threshold": 0.6}


def test_batch_recognition_is_one_record_counting_failed_images(user_client, user, people):
    rid, before = request_id(), mark()
    images = [upload(TEST / "obama1.jpg"), upload(LICENSE, name="bad.jpg"), upload(TEST / "kit_with_rose.jpg")]
    response = user_client.post("/api/faces/batch-recognize/", {"images": images}, HTTP_X_REQUEST_ID=rid)
    assert response.status_code == 200 and response.json()["failed"] == 1
    expected = sorted(people[n].pk for n in ("obama", "kit_harington", "rose_leslie"))
    record = only(before)
    assert_record(record, action="recognition.batch", actor=user, target_type="person", target_ids=expected,
                  rid=rid)
    assert (record.details["images"], record.details["failed_images"], record.details["faces"]) == (3, 1, 3)
    assert record.details["unknown"] == 0


def test_verify_is_recorded_and_a_refused_verify_is_not(user_client, user, people, tmp_path):
    obama = people["obama"]
    rid, before = request_id(), mark()
    body = user_client.post("/api/faces/verify/", {"image": upload(TEST / "obama1.jpg"), "person_id": obama.pk},
                            HTTP_X_REQUEST_ID=rid).json()
    record = only(before)
    assert_record(record, action="recognition.verify", actor=user, target_type="person", target_ids=[obama.pk],
                  rid=rid)
    assert record.details == {"mode": "person", "is_match": True, "face_id": body["face_id"], "threshold": 0.6}

    before = mark()
    pair = user_client.post("/api/faces/verify/", {"image_a": upload(TRAIN / "obama" / "obama.jpg"),
                                                   "image_b": upload(MISC / "biden.jpg")})
    assert pair.status_code == 200
    record = only(before)
    assert (record.action, record.target_ids, record.details["mode"], record.details["is_match"]) == (
        "recognition.verify", [], "pair", False)

    from PIL import Image

    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (300, 200), (90, 120, 150)).save(wall)
    before = mark()
    refused = user_client.post("/api/faces/verify/", {"image": upload(wall), "person_id": obama.pk})
    assert refused.status_code == 422 and since(before) == []


# ---- admin -----------------------------------------------------------------------------------

@pytest.fixture
def site_admin(db):
    return get_user_model().objects.create_superuser("site-admin", "", "site-admin-pass-123")


@pytest.fixture
def browser(site_admin):
    client = Client()
    client.force_login(site_admin)
    return client


def test_admin_writes_are_audited(browser, site_admin, people):
    rid, before = request_id(), mark()
    assert browser.post("/admin/people/gallery/add/", {"name": "Door", "slug": "door"},
                        HTTP_X_REQUEST_ID=rid).status_code == 302
    door = Gallery.objects.get(slug="door")
    assert_record(only(before), action="gallery.create", actor=site_admin, target_type="gallery",
                  target_ids=[door.pk], rid=rid)

    face = people["obama"].faces.get()
    rid, before = request_id(), mark()
    assert browser.post(f"/admin/people/face/{face.pk}/change/", {"person": people["biden"].pk},
                        HTTP_X_REQUEST_ID=rid).status_code == 302
    record = only(before)
    assert_record(record, action="face.update", actor=site_admin, target_type="face", target_ids=[face.pk], rid=rid)
    assert (record.details["person_id"], record.details["from_person_id"]) == (
        people["biden"].pk, people["obama"].pk)

    doomed = [people["kit_harington"].pk, people["rose_leslie"].pk]
    rid, before = request_id(), mark()
    response = browser.post("/admin/people/person/", {"action": "delete_selected", "post": "yes",
                                                      "_selected_action": [str(pk) for pk in doomed]},
                            HTTP_X_REQUEST_ID=rid)
    assert response.status_code == 302
    records = since(before)
    assert [(r.action, r.target_ids, r.actor_name, r.request_id) for r in records] == [
        ("person.delete", [pk], "site-admin", rid) for pk in sorted(doomed)]


def test_admin_audit_pages_are_read_only(browser, db):
    record = audit_record(actor=None, action="person.create", target_type="person", target_ids=[7])
    page = browser.get("/admin/audit/auditrecord/", {"action": "person.create"})
    assert page.status_code == 200 and "person.create" in page.content.decode()
    assert browser.get(f"/admin/audit/auditrecord/{record.pk}/change/").status_code == 200
    assert browser.get("/admin/audit/auditrecord/add/").status_code == 403
    assert browser.post(f"/admin/audit/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()


# ---- GET /api/audit/ -------------------------------------------------------------------------

@pytest.fixture
def trail(staff, user):
    """Four records at known times, oldest first."""
    now = timezone.now()
    rows = [
        (staff, "person.create", "person", [1], now - timedelta(days=3)),
        (staff, "face.enrol", "face", [11, 12], now - timedelta(days=2)),
        (user, "recognition.recognize", "person", [2, 21], now - timedelta(days=1)),
        (None, "person.delete", "person", [111], now),
    ]
    records = []
    for actor, action, target_type, ids, at in rows:
        record = audit_record(actor=actor, action=action, target_type=target_type, target_ids=ids)
        AuditRecord.objects.filter(pk=record.pk).update(created_at=at)
        records.append(record.pk)
    return records


def listed(client, **params) -> list[int]:
    response = client.get("/api/audit/", params)
    assert response.status_code == 200, response.json()
    return [r["id"] for r in response.json()["results"]]


def test_only_staff_read_the_trail(user_client, anon_client, trail):
    assert user_client.get("/api/audit/").status_code == 403
    assert anon_client.get("/api/audit/").status_code == 401


def test_the_trail_is_paginated_newest_first(staff_client, trail):
    body = staff_client.get("/api/audit/", {"page_size": 3}).json()
    assert body["count"] == 4 and [r["id"] for r in body["results"]] == trail[::-1][:3]
    assert set(body["results"][0]) == {"id", "created_at", "action", "actor", "actor_name", "target_type",
                                       "target_ids", "request_id", "details"}
    assert listed(staff_client, page=2, page_size=3) == trail[:1]


def test_the_trail_filters(staff_client, trail):
    first, enrol, recognize, delete = trail
    assert listed(staff_client, action="person.create") == [first]
    assert listed(staff_client, action="person") == [delete, first]  # a group: person.*
    assert listed(staff_client, actor="reader") == [recognize]
    assert listed(staff_client, target_type="face") == [enrol]
    # Whole ids only: 1 is not 11, 21 or 111.
    assert listed(staff_client, target_id=1) == [first]
    assert listed(staff_client, target_id=21) == [recognize]
    assert listed(staff_client, target_id=12) == [enrol]
    day = timezone.now() - timedelta(days=1, hours=12)
    assert listed(staff_client, since=day.isoformat()) == [delete, recognize]
    assert listed(staff_client, until=day.isoformat()) == [enrol, first]
    assert listed(staff_client, since=day.isoformat(), actor="operator") == []
    bad = staff_client.get("/api/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["details"]
