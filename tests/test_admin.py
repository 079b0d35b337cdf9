"""The Django admin: pages render what an operator needs, actions queue real jobs, deletes clean up.

Real database, real photos, real weights; one photo per person keeps it quick. Tests whose actions
queue jobs commit for real (``transaction=True``): the in-process pool starts jobs after commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from conftest import TEST, TRAIN, upload
from core.index.holder import index_cache
from core.index.log import db_index_seq
from jobs.backends import wait_idle
from jobs.models import Job
from people.models import Face, Gallery, Person
from people.services import face_enroll, person_create
from recognition.services import RecognizeOptions, recognize_images

FACES = "/admin/people/face/"
PEOPLE = "/admin/people/person/"
GALLERIES = "/admin/people/gallery/"
JOBS = "/admin/jobs/job/"
PHOTOS = {"obama": "obama.jpg", "biden": "biden.jpg", "kit_harington": "john2.jpeg"}


# ---- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture
def people(db, engine):
    """Obama, Biden and Kit Harington, one encoded photo each."""
    return {name: enrol(name, TRAIN / name / photo) for name, photo in PHOTOS.items()}


def enrol(name: str, *photos: Path, force: bool = False) -> Person:
    """A new person with these photos, enrolled through the service (``force``: over the
    duplicate check, for a twin on purpose)."""
    person = person_create(name=name)
    outcomes = face_enroll(person=person, uploads=[upload(p) for p in photos], force=force)
    assert [o.error for o in outcomes] == [None] * len(photos)
    return person


def photo_url(face: Face) -> str:
    return reverse("face-image", args=[face.pk])


def change_url(base: str, pk) -> str:
    return f"{base}{pk}/change/"


def page(client, url: str, **params) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def run_action(client, url: str, action: str, ids, **extra):
    """Post an admin action the way the changelist form does; returns the (followed) response."""
    response = client.post(url, {"action": action, "_selected_action": [str(i) for i in ids], **extra},
                           follow=True)
    assert response.status_code == 200
    return response


def person_form(name: str, *, galleries=(), faces=()) -> dict:
    """The Person add/change form as the admin posts it, with its read-only faces inline."""
    data = {"name": name, "external_id": "", "metadata": "{}", "galleries": [g.pk for g in galleries],
            "faces-TOTAL_FORMS": str(len(faces)), "faces-INITIAL_FORMS": str(len(faces)),
            "faces-MIN_NUM_FORMS": "0", "faces-MAX_NUM_FORMS": "1000"}
    for i, face in enumerate(faces):
        data.update({f"faces-{i}-id": face.pk, f"faces-{i}-person": face.person_id})
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def names_in(photo: Path, gallery: Gallery | None = None) -> list[str]:
    [result] = recognize_images([photo.read_bytes()], RecognizeOptions(gallery=gallery))
    return sorted(face["label"] for face in result["faces"])


def files_of(faces) -> list[Path]:
    paths = []
    for face in faces:
        paths.append(Path(face.image.path))
        if face.thumbnail:
            paths.append(Path(face.thumbnail.path))
    return paths


def unencode(face: Face) -> None:
    Face.objects.filter(pk=face.pk).update(status=Face.Status.PENDING, embedding=None, encoded_at=None)


def only_job() -> Job:
    [job] = Job.objects.all()
    return job


# ---- pages -----------------------------------------------------------------------------------

def test_person_changelist_lists_people_with_face_counts(browser, people):
    Person.objects.create(name="nobody yet")
    html = page(browser, PEOPLE)
    for name in [*people, "nobody yet"]:
        assert f'<td class="field-name">{name}</td>' in html
    assert html.count('<td class="field-face_total">1</td>') == 3
    assert html.count('<td class="field-face_total">0</td>') == 1


def test_person_change_page_shows_each_face_with_box_badge_and_encoding(browser, engine):
    obama = enrol("obama", *sorted((TRAIN / "obama").iterdir()))
    faces = list(obama.faces.all())
    assert len(faces) == 2
    html = page(browser, change_url(PEOPLE, obama.pk))
    assert "faces-TOTAL_FORMS" in html  # the inline is there
    for face in faces:
        scale = 160 / face.image_width
        assert f'<img src="{photo_url(face)}" style="width:160px;' in html
        box = (f"left:{round(face.box_left * scale)}px;top:{round(face.box_top * scale)}px;"
               f"width:{round((face.box_right - face.box_left) * scale)}px;"
               f"height:{round((face.box_bottom - face.box_top) * scale)}px")
        assert box in html
    assert html.count("background:#2e7d32;color:#fff") == 2  # green "Encoded" badges
    assert ">Encoded</span>" in html
    assert html.count("512 bytes") == 2


def test_person_change_page_shows_a_failed_face_in_red_without_encoding(browser, people):
    face = people["biden"].faces.get()
    Face.objects.filter(pk=face.pk).update(status=Face.Status.FAILED, embedding=None,
                                           error="stored image unreadable")
    html = page(browser, change_url(PEOPLE, people["biden"].pk))
    red_badge = '<span style="background:#c62828;color:#fff;padding:2px 8px;border-radius:8px">Failed'
    assert red_badge in html
    assert "stored image unreadable" in html
    assert "512 bytes" not in html


def test_face_changelist_filters_by_status(browser, people):
    unencode(people["obama"].faces.get())
    all_ids = set(Face.objects.values_list("id", flat=True))
    obama_face = people["obama"].faces.get().pk

    def listed(**params):
        response = browser.get(FACES, params)
        assert response.status_code == 200
        return {face.pk for face in response.context["cl"].result_list}, response.content.decode()

    everything, html = listed()
    assert everything == all_ids
    for pk in all_ids:  # the thumbnail column
        assert f'<img src="{reverse("face-thumbnail", args=[pk])}" style="width:48px' in html
    encoded, html = listed(status__exact="encoded")
    assert encoded == all_ids - {obama_face}
    assert ">Pending</span>" not in html
    pending, html = listed(status__exact="pending")
    assert pending == {obama_face}
    assert ">Pending</span>" in html and ">Encoded</span>" not in html


def test_face_change_page_shows_the_photo_box_badge_and_encoding(browser, people):
    face = people["kit_harington"].faces.get()
    html = page(browser, change_url(FACES, face.pk))
    assert f'<img src="{photo_url(face)}" style="width:320px;' in html
    scale = 320 / face.image_width
    assert f"left:{round(face.box_left * scale)}px;top:{round(face.box_top * scale)}px" in html
    assert ">Encoded</span>" in html
    assert "512 bytes" in html
    assert face.sha256 in html


def test_the_photo_the_admin_shows_is_served_to_the_operator(browser, people):
    face = people["obama"].faces.get()
    response = browser.get(photo_url(face))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (TRAIN / "obama" / "obama.jpg").read_bytes()


def test_gallery_pages_show_members(browser, people):
    gallery = Gallery.objects.create(name="Class A", slug="class-a")
    Gallery.objects.create(name="Empty", slug="empty")
    gallery.people.add(people["obama"], people["biden"])
    html = page(browser, GALLERIES)
    assert "Class A" in html and "class-a" in html
    assert '<td class="field-member_count">2</td>' in html
    assert '<td class="field-member_count">0</td>' in html
    html = page(browser, change_url(GALLERIES, gallery.pk))
    assert 'value="class-a"' in html


@pytest.fixture
def finished_job(db):
    return Job.objects.create(kind=Job.Kind.ENCODE, state=Job.State.SUCCEEDED, face_ids=[1, 2, 3],
                              total=3, processed=3, encoded=2, failed=1,
                              errors=[{"face_id": 3, "message": "No face was found in the photo."}],
                              message="2 encoded, 1 failed.")


def test_job_pages_render(browser, finished_job):
    html = page(browser, JOBS)
    assert str(finished_job.pk) in html and "Succeeded" in html
    html = page(browser, change_url(JOBS, finished_job.pk))
    assert "2 encoded, 1 failed." in html
    assert "No face was found in the photo." in html
    assert str(finished_job.pk) not in page(browser, JOBS, state__exact="failed")


def test_jobs_are_read_only(browser, finished_job):
    assert browser.get(f"{JOBS}add/").status_code == 403
    assert 'name="_save"' not in page(browser, change_url(JOBS, finished_job.pk))
    response = browser.post(change_url(JOBS, finished_job.pk), {"state": "queued", "_save": "Save"})
    assert response.status_code == 403
    finished_job.refresh_from_db()
    assert finished_job.state == Job.State.SUCCEEDED


@pytest.mark.parametrize("url", [PEOPLE, FACES, GALLERIES, JOBS, "/admin/"])
def test_non_staff_users_are_sent_to_the_login_page(user, url):
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert Client().get(url).status_code == 302  # anonymous too


def test_adding_two_people_without_external_id_keeps_both(browser, db):
    for name in ("Ada", "Grace"):
        response = browser.post(f"{PEOPLE}add/", person_form(name))
        assert response.status_code == 302, response.content.decode()[:2000]
    assert list(Person.objects.values_list("name", "external_id")) == [("Ada", None), ("Grace", None)]


# ---- actions ---------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_encode_selected_encodes_a_pending_face_again(browser, people):
    face = people["obama"].faces.get()
    before = face.embedding_array().copy()
    unencode(face)

    response = run_action(browser, FACES, "encode_selected", [face.pk])
    wait_idle()

    job = only_job()
    assert any(f"job {job.pk} queued for 1 face(s)" in m for m in messages_of(response))
    assert (job.kind, job.state, job.total, job.encoded) == ("encode", "succeeded", 1, 1)
    face.refresh_from_db()
    assert face.status == Face.Status.ENCODED and face.encoded_at is not None
    assert len(bytes(face.embedding)) == 512
    np.testing.assert_allclose(face.embedding_array(), before, atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_encode_selected_skips_faces_already_encoded(browser, people):
    response = run_action(browser, FACES, "encode_selected", [people["obama"].faces.get().pk])
    assert "Nothing to encode." in messages_of(response)
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_reencode_selected_reencodes_only_those(browser, people):
    chosen = [people["obama"].faces.get(), people["biden"].faces.get()]
    other = people["kit_harington"].faces.get()

    run_action(browser, FACES, "reencode_selected", [f.pk for f in chosen])
    wait_idle()

    job = only_job()
    assert (job.state, job.total, job.encoded) == ("succeeded", 2, 2)
    assert sorted(job.face_ids) == sorted(f.pk for f in chosen)
    for face in chosen:
        assert Face.objects.get(pk=face.pk).encoded_at > face.encoded_at
    assert Face.objects.get(pk=other.pk).encoded_at == other.encoded_at


@pytest.mark.django_db(transaction=True)
def test_reencode_all_reencodes_every_face(browser, people):
    unencode(people["obama"].faces.get())
    response = run_action(browser, FACES, "reencode_all", [people["biden"].faces.get().pk])
    wait_idle()

    job = only_job()
    assert any(f"Re-encode all: job {job.pk} queued." in m for m in messages_of(response))
    assert (job.kind, job.state, job.total, job.encoded) == ("regenerate_all", "succeeded", 3, 3)
    assert set(Face.objects.values_list("status", flat=True)) == {Face.Status.ENCODED}


@pytest.mark.django_db(transaction=True)
def test_person_actions_encode_their_faces(browser, people):
    unencode(people["obama"].faces.get())
    ids = [people["obama"].pk, people["biden"].pk]
    run_action(browser, PEOPLE, "encode_people", ids)
    wait_idle()
    job = only_job()
    assert (job.face_ids, job.state) == ([people["obama"].faces.get().pk], "succeeded")

    run_action(browser, PEOPLE, "reencode_people", ids)
    wait_idle()
    latest = Job.objects.exclude(pk=job.pk).get()
    assert (latest.total, latest.encoded, latest.state) == (2, 2, "succeeded")


def test_reload_index_reports_the_encodings(browser, people):
    unencode(people["obama"].faces.get())  # pending faces are not searchable
    response = run_action(browser, FACES, "reload_index", [people["biden"].faces.get().pk])
    assert "Index rebuild asked of every process; 2 encodings answering here now." in messages_of(response)
    assert index_cache.size == 2


def test_clear_index_drops_this_process_copy(browser, people):
    assert len(index_cache.get()) == 3
    response = run_action(browser, PEOPLE, "clear_index", [people["obama"].pk])
    assert "Index cleared in this process." in messages_of(response)
    assert index_cache.size == 0
    assert names_in(TEST / "obama1.jpg") == ["obama"]  # rebuilt on next use


# ---- edits and deletes -----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_deleting_a_person_removes_faces_files_and_recognition(browser, people):
    obama = people["obama"]
    faces = list(obama.faces.all())
    files = files_of(faces)
    assert files and all(p.is_file() for p in files)
    assert names_in(TEST / "obama1.jpg") == ["obama"]

    response = browser.post(f"{PEOPLE}{obama.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    assert not Person.objects.filter(pk=obama.pk).exists()
    assert not Face.objects.filter(pk__in=[f.pk for f in faces]).exists()
    assert not any(p.exists() for p in files)
    assert names_in(TEST / "obama1.jpg") == ["unknown"]
    assert len(index_cache.get()) == 2


@pytest.mark.django_db(transaction=True)
def test_bulk_deleting_people_and_faces_removes_their_files(browser, people):
    assert names_in(TEST / "obama_and_biden.jpg") == ["biden", "obama", "unknown"]
    doomed_people = [people["obama"], people["biden"]]
    doomed_face = people["kit_harington"].faces.get()
    person_files = files_of(Face.objects.filter(person__in=doomed_people))
    face_files = files_of([doomed_face])

    run_action(browser, PEOPLE, "delete_selected", [p.pk for p in doomed_people], post="yes")
    run_action(browser, FACES, "delete_selected", [doomed_face.pk], post="yes")

    assert list(Person.objects.values_list("name", flat=True)) == ["kit_harington"]
    assert not Face.objects.exists()
    assert not any(p.exists() for p in person_files + face_files)
    assert names_in(TEST / "obama_and_biden.jpg") == ["unknown"] * 3
    assert names_in(TEST / "johnsnow_test1.jpg") == ["unknown"]


def test_moving_a_face_to_another_person_changes_who_is_recognised(browser, people):
    assert names_in(TEST / "obama1.jpg") == ["obama"]  # the index is built and cached
    face = people["obama"].faces.get()
    response = browser.post(change_url(FACES, face.pk), {"person": people["biden"].pk})
    assert response.status_code == 302
    assert Face.objects.get(pk=face.pk).person_id == people["biden"].pk
    assert names_in(TEST / "obama1.jpg") == ["biden"]


def test_moving_a_face_to_a_person_who_has_the_same_photo_is_refused(browser, engine, people):
    twin = enrol("obama again", TRAIN / "obama" / "obama.jpg", force=True)
    face = people["obama"].faces.get()
    response = browser.post(change_url(FACES, face.pk), {"person": twin.pk})
    assert response.status_code == 200  # the form again, with the error
    assert "already has this photo" in response.content.decode()
    assert Face.objects.get(pk=face.pk).person_id == people["obama"].pk


def test_adding_a_person_to_a_gallery_in_the_admin_makes_them_findable_there(browser, people):
    gallery = Gallery.objects.create(name="Door 1", slug="door-1")
    assert names_in(TEST / "obama1.jpg", gallery) == ["unknown"]
    obama = people["obama"]
    response = browser.post(change_url(PEOPLE, obama.pk),
                            person_form("obama", galleries=[gallery], faces=obama.faces.all()))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(obama.galleries.all()) == [gallery]
    assert names_in(TEST / "obama1.jpg", gallery) == ["obama"]


def test_bulk_deleting_galleries_moves_the_index_version(browser, db):
    galleries = [Gallery.objects.create(name=n, slug=n) for n in ("a", "b")]
    before = db_index_seq()
    run_action(browser, GALLERIES, "delete_selected", [g.pk for g in galleries], post="yes")
    assert not Gallery.objects.exists()
    assert db_index_seq() > before
