"""The index change log (core.index): what writes append, how a process applies it in place, the
compaction, and the full rebuild that runs in the background while the old index answers."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from django.db import connections, transaction
from django.utils import timezone

from conftest import TEST, upload
from core.index import sources
from core.index.holder import IndexUnavailable, build_index, index_cache
from core.index.log import Change, Kind, index_log_append, index_log_compact, index_log_state
from core.models import IndexChange, IndexLogState
from people.engine import embedding_model_id
from people.index_log import index_faces_changed
from people.models import Face, Gallery, Person
from people.services import face_delete, gallery_create, gallery_delete, person_create, person_delete, person_update

RNG = np.random.default_rng(7)


def unit_vectors(count: int) -> np.ndarray:
    vectors = RNG.normal(size=(count, 128)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * 0.6


def add_faces(person: Person, vectors: np.ndarray, *, model: str | None = None) -> list[int]:
    """Encoded face rows written the way an encoding job leaves them, logged in the same transaction."""
    with transaction.atomic():
        faces = [Face.objects.create(person=person, image=f"synthetic/{person.pk}-{i}.jpg",
                                     sha256=f"{person.pk:032x}{RNG.integers(1 << 62):032x}",
                                     status=Face.Status.ENCODED, model=model or embedding_model_id(),
                                     embedding=vector.astype("<f4").tobytes())
                 for i, vector in enumerate(vectors)]
        index_faces_changed(face.pk for face in faces)
    return [face.pk for face in faces]


def face_ids_of(index) -> set[int]:
    return set(index.face_ids.tolist())


def nearest(index, vector: np.ndarray, gallery_id: int | None = None):
    found = index.search(vector[None, :], 1, gallery_id=gallery_id)[0]
    return found[0] if found else None


def kinds() -> list[str]:
    return list(IndexChange.objects.order_by("seq").values_list("kind", flat=True))


def test_every_write_logs_what_it_changed_in_commit_order(staff_client, engine):
    gallery = gallery_create(name="Staff", slug="staff")
    person = person_create(name="obama", galleries=[gallery])
    response = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": upload(TEST / "obama1.jpg")})
    assert response.status_code == 201, response.content
    face = Face.objects.get(person=person)
    logged = IndexChange.objects.get(kind=Kind.FACE)
    assert (logged.item_id, logged.person_id, logged.galleries, logged.model) == (
        face.pk, person.pk, [gallery.pk], embedding_model_id())
    assert bytes(logged.embedding) == bytes(face.embedding)
    person_update(person=person, galleries=[])
    face_delete(face=face)
    other = person_create(name="biden")
    person_delete(person=other)
    gallery_delete(gallery=gallery)
    assert kinds() == [Kind.PERSON_GALLERIES, Kind.FACE, Kind.PERSON_GALLERIES, Kind.FACE_REMOVED,
                       Kind.PERSON_REMOVED, Kind.GALLERY_REMOVED]
    logged.refresh_from_db()
    assert logged.embedding is None  # a deleted face's embedding does not outlive it in the log
    assert list(IndexChange.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5, 6]
    assert index_log_state()[0] == 6


def test_appending_outside_the_writing_transaction_is_refused(db):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        index_log_append([Change(kind=Kind.RELOAD)])
    assert not IndexChange.objects.exists()


def test_a_write_is_applied_in_place_without_a_rebuild(staff_client, user_client, enrolled):
    def names() -> list[str]:
        body = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()
        return [face["label"] for face in body["faces"]]

    assert names() == ["obama"]
    loaded = index_cache.status()
    obama = Person.objects.get(name="obama")
    person_delete(person=obama)
    assert names() == ["unknown"]
    twin = person_create(name="obama again")
    response = staff_client.post(f"/api/people/{twin.pk}/faces/", {"image": upload(TEST / "obama1.jpg"),
                                                                  "force": "true"})
    assert response.status_code == 201, response.content
    assert names() == ["obama again"]
    after = index_cache.status()
    assert after["rebuilds"] == loaded["rebuilds"]  # applied in place, never rebuilt
    assert after["applied_seq"] > loaded["applied_seq"]


def test_a_face_of_another_model_leaves_the_index(db):
    person = person_create(name="someone")
    vector = unit_vectors(1)
    [pk] = add_faces(person, vector)
    assert nearest(index_cache.get(), vector[0]).face_id == pk
    with transaction.atomic():
        Face.objects.filter(pk=pk).update(model="another-model/v0")
        index_faces_changed([pk])
    assert nearest(index_cache.get(), vector[0]) is None


def test_gallery_changes_move_what_a_gallery_search_sees(db):
    staff, visitors = gallery_create(name="Staff", slug="staff"), gallery_create(name="Visitors", slug="visitors")
    person = person_create(name="someone", galleries=[staff])
    vector = unit_vectors(1)
    add_faces(person, vector)
    index = index_cache.get()
    assert nearest(index, vector[0], staff.pk).person_id == person.pk
    assert nearest(index, vector[0], visitors.pk) is None
    person_update(person=person, galleries=[visitors])
    index = index_cache.get()
    assert nearest(index, vector[0], staff.pk) is None
    assert nearest(index, vector[0], visitors.pk).person_id == person.pk
    visitors_pk = visitors.pk
    gallery_delete(gallery=visitors)
    assert nearest(index_cache.get(), vector[0], visitors_pk) is None


def test_memberships_written_through_the_orm_reach_the_index(db):
    """Not only the services: any m2m write of Person.galleries (admin, scripts) is logged."""
    door = Gallery.objects.create(name="Door", slug="door")
    person = person_create(name="someone")
    vector = unit_vectors(1)
    add_faces(person, vector)
    assert nearest(index_cache.get(), vector[0], door.pk) is None
    person.galleries.add(door)
    assert nearest(index_cache.get(), vector[0], door.pk).person_id == person.pk
    door.people.clear()
    assert nearest(index_cache.get(), vector[0], door.pk) is None
    door.people.add(person)
    assert nearest(index_cache.get(), vector[0], door.pk).person_id == person.pk
    person.galleries.remove(door)
    assert nearest(index_cache.get(), vector[0], door.pk) is None


def age(changes, hours: float) -> None:
    changes.update(created=timezone.now() - timedelta(hours=hours))


def test_compaction_drops_additions_first_and_removals_much_later(db, settings):
    settings.INDEX_LOG_RETENTION_HOURS, settings.INDEX_LOG_REMOVALS_RETENTION_DAYS = 24, 30
    person = person_create(name="someone")
    ids = add_faces(person, unit_vectors(3))
    face_delete(face=Face.objects.get(pk=ids[0]))
    age(IndexChange.objects.all(), 48)
    assert index_log_compact() == {"index_changes": 3}
    assert kinds() == [Kind.FACE_REMOVED]
    state = IndexLogState.objects.get()
    assert (state.seq, state.upserts_compacted_through, state.compacted_through) == (4, 4, 0)
    age(IndexChange.objects.all(), 31 * 24)
    assert index_log_compact() == {"index_changes": 1}
    state.refresh_from_db()
    assert (state.upserts_compacted_through, state.compacted_through) == (4, 4)
    assert not IndexChange.objects.exists()


def test_a_process_behind_the_compacted_additions_rebuilds_and_still_applies_removals(db):
    person = person_create(name="someone")
    kept, gone = unit_vectors(2)
    add_faces(person, np.stack([gone]))
    assert len(index_cache.get()) == 1
    new_ids = add_faces(person, np.stack([kept]))
    face_delete(face=Face.objects.get(person=person, embedding=gone.astype("<f4").tobytes()))
    age(IndexChange.objects.filter(kind=Kind.FACE), 48)
    index_log_compact()
    index = index_cache.get()
    assert nearest(index, kept).face_id == new_ids[0]
    assert nearest(index, gone).face_id == new_ids[0]  # the deleted face is not there
    assert len(index) == 1 and index_cache.status()["last_rebuild_reason"] == "behind the compacted additions"


def held_snapshots(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Full snapshots (rebuilds) wait until ``release`` is set, after setting ``started``: the
    real reader, held, so a test can look at the process while a rebuild is under way."""
    started, release = threading.Event(), threading.Event()
    real = sources.sources.faces

    def held(model: str):
        started.set()
        assert release.wait(60)
        return real(model)

    monkeypatch.setattr(sources.sources, "faces", held)
    return started, release


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_runs_in_the_background_while_the_old_index_answers(monkeypatch):
    person = person_create(name="someone")
    vectors = unit_vectors(3)
    ids = add_faces(person, vectors)
    index = index_cache.get()
    assert len(index) == 3
    started, release = held_snapshots(monkeypatch)
    try:
        index_cache.reload()
        assert started.wait(30)
        assert index_cache.status()["rebuilding"]
        # Meanwhile the old index answers, and a deletion reaches it at once.
        face_delete(face=Face.objects.get(pk=ids[0]))
        assert index_cache.get() is index and nearest(index, vectors[0]).face_id != ids[0]
    finally:
        release.set()
    thread = index_cache._rebuild_thread
    thread.join(60)
    rebuilt = index_cache.get()
    assert rebuilt is not index and not thread.is_alive()
    assert {nearest(rebuilt, v).face_id for v in vectors} == set(ids[1:])
    assert index_cache.status()["last_rebuild_reason"] == "reload asked for"


@pytest.mark.django_db(transaction=True)
def test_a_process_behind_every_removal_refuses_until_its_rebuild_is_done(monkeypatch, settings):
    person = person_create(name="someone")
    vector = unit_vectors(1)
    [pk] = add_faces(person, vector)
    assert len(index_cache.get()) == 1
    person_delete(person=person)
    age(IndexChange.objects.all(), 31 * 24)
    index_log_compact()  # the removal is gone from the log: this process cannot learn of it
    started, release = held_snapshots(monkeypatch)
    try:
        with pytest.raises(IndexUnavailable) as refused:
            index_cache.get()
        assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "5"}
        assert started.wait(30) and index_cache.current() is None
    finally:
        release.set()
    index_cache._rebuild_thread.join(60)
    assert len(index_cache.get()) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_lose_a_committed_change():
    """Writers on several threads (connections) while a reader catches up again and again: the
    log's numbers have no gap and the index ends equal to a fresh snapshot."""
    people = [person_create(name=f"writer {n}") for n in range(4)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(person: Person) -> None:
        try:
            for _ in range(6):
                ids = add_faces(person, unit_vectors(3))
                face_delete(face=Face.objects.get(pk=ids[1]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def read() -> None:
        try:
            while not stop.is_set():
                index_cache.get()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(p,)) for p in people]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    reader.join(60)
    assert not errors, errors
    seqs = list(IndexChange.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 4 * 6 * (3 + 1)
    index, fresh = index_cache.get(), build_index()
    assert len(index) == len(fresh) == 4 * 6 * 2
    assert face_ids_of(index) == face_ids_of(fresh) == set(
        Face.objects.filter(status=Face.Status.ENCODED).values_list("pk", flat=True))

