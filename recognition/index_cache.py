"""This process's copy of the gallery index, rebuilt when the index version moves."""

from __future__ import annotations

import threading

import numpy as np
from django.conf import settings

from face_engine.index import GalleryIndex
from face_engine.runtime import device_search
from people.engine import embedding_model_id
from people.index_version import current_index_token, index_version_bump
from people.models import Face, Person, embedding_matrix


def load_index(previous: GalleryIndex | None = None) -> GalleryIndex:
    """One scan of encoded faces into one array (no model instances). An IVF index reuses the
    ``previous`` index's trained cells when the gallery's size still suits them."""
    rows = Face.objects.filter(status=Face.Status.ENCODED, model=embedding_model_id(),
                               embedding__isnull=False).values_list("id", "person_id", "embedding")
    face_ids, person_ids, blobs = [], [], []
    for face_id, person_id, blob in rows.iterator(chunk_size=5000):
        face_ids.append(face_id)
        person_ids.append(person_id)
        blobs.append(blob)
    vectors = embedding_matrix(blobs)
    memberships: dict[int, list[int]] = {}
    for person_id, gallery_id in Person.galleries.through.objects.values_list("person_id", "gallery_id"):
        memberships.setdefault(person_id, []).append(gallery_id)
    negative_people, negative_vectors = _negatives()
    engine = settings.FACE_ENGINE
    return GalleryIndex(np.asarray(face_ids, dtype=np.int64), np.asarray(person_ids, dtype=np.int64),
                        vectors, memberships, exact_max=engine.index_exact_max, nprobe=engine.index_nprobe,
                        device_search=device_search(engine),
                        trained=previous.trained if previous is not None else None,
                        negative_person_ids=negative_people, negative_embeddings=negative_vectors)


def _negatives() -> tuple[np.ndarray, np.ndarray]:
    """The negative faces ("not X", corrections app) of the current embedding model: a query
    closer to one of X's than to X's own faces is not named X."""
    from corrections.models import NegativeFace

    rows = NegativeFace.objects.filter(model=embedding_model_id()).values_list("person_id", "embedding")
    people, blobs = [], []
    for person_id, blob in rows.iterator(chunk_size=5000):
        people.append(person_id)
        blobs.append(blob)
    return np.asarray(people, dtype=np.int64), embedding_matrix(blobs)


class IndexCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: GalleryIndex | None = None
        self._token: str | None = None

    def get(self) -> GalleryIndex:
        """The up-to-date index: a cheap version check, a rebuild only when it moved."""
        token = current_index_token()
        if self._index is None or token != self._token:
            with self._lock:
                if self._index is None or token != self._token:
                    # The token is read before the scan, so a write committed during the scan
                    # leaves a newer token behind and triggers another rebuild next time.
                    self._index = load_index(self._index)
                    self._token = token
        return self._index

    def reload(self) -> GalleryIndex:
        """Rebuild here now and tell every other process to rebuild too."""
        from django.db import transaction

        with transaction.atomic():
            index_version_bump()
        with self._lock:
            self._index, self._token = None, None
        return self.get()

    def current(self) -> GalleryIndex | None:
        """The index this process holds now, without checking the version (None before the first
        load): what a live stream matches against while the database is unreachable."""
        return self._index

    def clear(self) -> None:
        """Drop this process's copy; the next request rebuilds it from the database."""
        with self._lock:
            self._index, self._token = None, None

    @property
    def size(self) -> int:
        return len(self._index) if self._index is not None else 0


index_cache = IndexCache()
