"""Concurrent writes on the embedded SQLite default: no lost data, no duplicates, no 500."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from conftest import MISC, TRAIN, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(fn):
    def run(*args):
        try:
            return fn(*args)
        finally:
            connection.close()
    return run


def test_the_same_photo_enrolled_concurrently_is_stored_once(engine):
    from people.services import face_enroll, person_create

    person = person_create(name="Obama")
    photo = TRAIN / "obama" / "obama.jpg"

    @_in_thread
    def enrol(_):
        return face_enroll(person=person, uploads=[upload(photo)])[0]

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(enrol, range(4)))
    assert all(o.error is None for o in outcomes)
    assert sum(not o.duplicate for o in outcomes) == 1
    assert len({o.face.pk for o in outcomes}) == 1
    assert person.faces.count() == 1


def test_concurrent_enrolments_of_different_people_are_all_kept(engine):
    from core.index.holder import index_cache
    from people.models import Face
    from people.services import face_enroll, person_create

    photos = [TRAIN / "obama" / "obama.jpg", TRAIN / "biden" / "biden.jpg",
              TRAIN / "rose_leslie" / "img1.jpg", MISC / "lin-manuel-miranda.png"]

    @_in_thread
    def enrol(index):
        person = person_create(name=f"person {index}")
        return face_enroll(person=person, uploads=[upload(photos[index])])[0]

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(enrol, range(len(photos))))
    assert [o.error for o in outcomes] == [None] * len(photos)
    assert Face.objects.filter(status="encoded").count() == len(photos)
    assert len(index_cache.get()) == len(photos)
