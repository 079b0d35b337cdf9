"""Duplicate identities: the same person enrolled under two names.

Two reads, both against the faces of the current embedding model:
- ``possible_duplicate``: at enrolment, the nearest face of *another* person within the threshold
  (people.services.face_enroll refuses the photo unless forced); one search of this process's index.
- ``duplicate_scan`` / ``duplicate_pairs``: every pair of people with faces within the threshold,
  nearest first, for cleaning a gallery in one pass: one FAISS range search of all the faces against
  each other (face_engine.pairs), grouped per pair of people with numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from core.index.holder import index_cache
from face_engine.pairs import DEFAULT_PAIRS_EXACT_MAX, close_pairs
from face_engine.types import EMBEDDING_BYTES, EMBEDDING_DIM
from people.engine import checked_distance_threshold, embedding_model_id
from people.models import Face, Gallery, Person, embedding_matrix

DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class DuplicateHit:
    """The face of another person that an enrolled embedding matches."""

    person_id: int
    person_name: str
    face_id: int
    distance: float


@dataclass(frozen=True)
class DuplicatePair:
    """Two people (``person_a_id`` < ``person_b_id``) with faces within the threshold: the closest
    two faces and their distance, and how many face pairs of theirs are within it."""

    person_a_id: int
    person_a_name: str
    face_a_id: int
    person_b_id: int
    person_b_name: str
    face_b_id: int
    distance: float
    face_pairs: int


@dataclass(frozen=True)
class DuplicateScan:
    threshold: float
    gallery_id: int | None
    faces: int  # encoded faces scanned
    people: int  # people those faces belong to
    total: int  # pairs found; ``pairs`` holds the nearest ``limit`` of them
    pairs: list[DuplicatePair]
    seconds: float


def possible_duplicate(*, person: Person, embedding: np.ndarray, threshold: float | None = None) -> DuplicateHit | None:
    """The nearest face of a person other than ``person`` within ``threshold`` of ``embedding``
    (default DUPLICATE_THRESHOLD), or None. The index answers per person, so the two nearest
    people are enough: at most one of them is ``person``."""
    limit = checked_distance_threshold(threshold, default=settings.DUPLICATE_THRESHOLD)
    query = np.asarray(embedding, dtype=np.float32).reshape(1, EMBEDDING_DIM)
    for match in index_cache.get().search(query, 2)[0]:
        if match.person_id == person.pk or match.distance > limit:
            continue
        name = Person.objects.filter(pk=match.person_id).values_list("name", flat=True).first()
        if name is None:  # deleted since this process's index was built
            continue
        return DuplicateHit(person_id=match.person_id, person_name=name, face_id=match.face_id,
                            distance=match.distance)
    return None


def _encoded_faces(gallery: Gallery | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face ids, person ids, vectors) of every encoded face of the current model, in one scan."""
    rows = Face.objects.filter(status=Face.Status.ENCODED, model=embedding_model_id(), embedding__isnull=False)
    if gallery is not None:
        rows = rows.filter(person__galleries=gallery)
    face_ids, person_ids, blobs = [], [], []
    for face_id, person_id, blob in rows.values_list("id", "person_id", "embedding").iterator(chunk_size=5000):
        blob = bytes(blob)
        if len(blob) == EMBEDDING_BYTES:  # one damaged row must not shift every vector after it
            face_ids.append(face_id)
            person_ids.append(person_id)
            blobs.append(blob)
    vectors = embedding_matrix(blobs)
    return np.asarray(face_ids, dtype=np.int64), np.asarray(person_ids, dtype=np.int64), vectors


def duplicate_scan(*, threshold: float | None = None, gallery: Gallery | None = None,
                   limit: int = DEFAULT_LIMIT) -> DuplicateScan:
    """Every pair of different people with some faces within ``threshold`` (default
    FACE_MATCH_THRESHOLD: the pairs recognition itself could confuse), both in ``gallery`` when
    one is given: how many, and the nearest ``limit`` pairs."""
    radius = checked_distance_threshold(threshold, default=settings.FACE_ENGINE.match_threshold)
    started = time.perf_counter()
    face_ids, person_ids, vectors = _encoded_faces(gallery)
    found = close_pairs(vectors, person_ids, radius, nprobe=settings.FACE_ENGINE.index_nprobe,
                        exact_max=DEFAULT_PAIRS_EXACT_MAX)
    shown = slice(0, max(0, limit))
    ids = {int(i) for i in found.label_a[shown]} | {int(i) for i in found.label_b[shown]}
    names = dict(Person.objects.filter(pk__in=ids).values_list("id", "name")) if ids else {}
    pairs = [
        DuplicatePair(person_a_id=int(a), person_a_name=names.get(int(a), ""), face_a_id=int(face_ids[ra]),
                      person_b_id=int(b), person_b_name=names.get(int(b), ""), face_b_id=int(face_ids[rb]),
                      distance=float(d), face_pairs=int(n))
        for a, b, ra, rb, d, n in zip(found.label_a[shown], found.label_b[shown], found.row_a[shown],
                                      found.row_b[shown], found.distance[shown], found.count[shown], strict=True)
    ]
    return DuplicateScan(threshold=radius, gallery_id=gallery.pk if gallery is not None else None,
                         faces=len(face_ids), people=len(np.unique(person_ids)), total=len(found),
                         pairs=pairs, seconds=time.perf_counter() - started)


def duplicate_pairs(*, threshold: float | None = None, gallery: Gallery | None = None,
                    limit: int = DEFAULT_LIMIT) -> list[DuplicatePair]:
    """The nearest ``limit`` pairs of ``duplicate_scan``."""
    return duplicate_scan(threshold=threshold, gallery=gallery, limit=limit).pairs
