"""What people's writes tell the face index (core.index): the change log entries for faces,
persons and galleries, and the full snapshot a process rebuilds from.

Each ``index_*`` function runs inside the writing transaction, after the write, and records the
state the write left: a face that is encoded (with the current embedding and its person's
galleries) or gone, a person's galleries, a person or a gallery removed."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.conf import settings

from core.index.log import Change, Kind, index_log_append, index_log_forget
from core.index.sources import FacesSnapshot
from people.models import Face, Person, embedding_matrix


def _memberships(person_ids: Iterable[int] | None = None) -> dict[int, list[int]]:
    rows = Person.galleries.through.objects.all()
    if person_ids is not None:
        rows = rows.filter(person_id__in=list(person_ids))
    found: dict[int, list[int]] = {}
    for person_id, gallery_id in rows.values_list("person_id", "gallery_id").order_by("person_id", "gallery_id"):
        found.setdefault(person_id, []).append(gallery_id)
    return found


def index_faces_changed(face_ids: Iterable[int]) -> None:
    """These faces as they stand now: each encoded one (re)enters the index, any other leaves it."""
    ids = sorted(set(face_ids))
    if not ids:
        return
    rows = {pk: (person, status, blob, model) for pk, person, status, blob, model in Face.objects.filter(
        pk__in=ids).values_list("id", "person_id", "status", "embedding", "model")}
    encoded = {pk: row for pk, row in rows.items() if row[1] == Face.Status.ENCODED and row[2] is not None}
    galleries = _memberships({row[0] for row in encoded.values()})
    changes = [
        Change(kind=Kind.FACE, item_id=pk, person_id=encoded[pk][0], galleries=tuple(galleries.get(encoded[pk][0], ())),
               embedding=bytes(encoded[pk][2]), model=encoded[pk][3])
        if pk in encoded else Change(kind=Kind.FACE_REMOVED, item_id=pk)
        for pk in ids
    ]
    index_log_forget(face_ids=[c.item_id for c in changes if c.kind == Kind.FACE_REMOVED and c.item_id])
    index_log_append(changes)


def index_person_galleries_changed(person_ids: Iterable[int]) -> None:
    """These people's galleries as they stand now (what a gallery search sees)."""
    ids = sorted(set(person_ids))
    galleries = _memberships(ids)
    index_log_append([Change(kind=Kind.PERSON_GALLERIES, person_id=pk, galleries=tuple(galleries.get(pk, ())))
                      for pk in ids])


def memberships_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """m2m_changed of Person.galleries, whichever way it was written (a service, the admin, a
    script): the people concerned get their galleries logged, inside the write's transaction (the
    related manager writes in one)."""
    if action == "pre_clear" and reverse:  # a gallery emptied: who was in it is about to be lost
        instance._index_clearing = list(instance.people.values_list("pk", flat=True))
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        people = [instance.pk]
    elif action == "post_clear":
        people = getattr(instance, "_index_clearing", [])
    else:
        people = list(pk_set or ())
    if people:
        index_person_galleries_changed(people)


def index_person_removed(person_id: int) -> None:
    """The person is being erased: the log forgets their embeddings, and every process drops them.
    Machines sharing an index snapshot (FACE_INDEX_SHARED_DIR) are asked for a new one, which
    replaces the file that still holds the person's embeddings (core/index/shared.py)."""
    index_log_forget(person_id=person_id)
    changes = [Change(kind=Kind.PERSON_REMOVED, person_id=person_id)]
    if settings.FACE_INDEX_SHARED_DIR:
        changes.append(Change(kind=Kind.RELOAD))
    index_log_append(changes)


def index_gallery_removed(gallery_id: int) -> None:
    index_log_append([Change(kind=Kind.GALLERY_REMOVED, item_id=gallery_id)])


def faces_snapshot(model: str) -> FacesSnapshot:
    """Every encoded face of ``model`` in one scan (no model instances), and every membership."""
    rows = Face.objects.filter(status=Face.Status.ENCODED, model=model,
                               embedding__isnull=False).values_list("id", "person_id", "embedding")
    face_ids, person_ids, blobs = [], [], []
    for face_id, person_id, blob in rows.iterator(chunk_size=5000):
        face_ids.append(face_id)
        person_ids.append(person_id)
        blobs.append(blob)
    return FacesSnapshot(np.asarray(face_ids, dtype=np.int64), np.asarray(person_ids, dtype=np.int64),
                         embedding_matrix(blobs), _memberships())
