"""GalleryIndex: the gallery's faces searched per person and per gallery, updated in place.

Faces live in slots (vectors.py): ``slot -> face id`` and ``slot -> person id`` are numpy arrays
grown by doubling, a removed slot holds -1 in both, so there are no per-face Python objects.
A write finds its slots with one numpy pass over those arrays (~1 ms at 1M faces) and applies
them in O(faces written): FAISS adds/removes by slot, gallery slot sets change in place. Slots are
not reused, so an index that has seen many writes asks for a rebuild (``rebuild_reason``) and the
caller builds a fresh one in the background while this one keeps answering.

Searches share the index under a read lock; a write holds it alone only while it applies what it
has already looked up (its numpy passes run beforehand, under a lock of the writers' own), so a
search waits for at most that short apply, and never sees half of one write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.index.galleries import Galleries
from face_engine.index.negatives import Negatives, last_of_each
from face_engine.index.vectors import (
    DEFAULT_EXACT_MAX,
    DEFAULT_NPROBE,
    IdArray,
    Vectors,
    VectorStore,
    as_vectors,
    cells_suit,
    ivf_cells,
)
from face_engine.types import EMBEDDING_DIM, Match


def _ids(values: Iterable[int] | IdArray) -> IdArray:
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64).reshape(-1)


class _ReadWriteLock:
    """Any number of searches, or one write. A waiting write holds back new searches, so a steady
    stream of them cannot starve it. Not reentrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class GalleryIndex:
    def __init__(
        self,
        face_ids: Iterable[int] | IdArray,
        person_ids: Iterable[int] | IdArray,
        embeddings: npt.NDArray[np.float32],
        person_galleries: Mapping[int, Iterable[int]] | None = None,
        *,
        exact_max: int = DEFAULT_EXACT_MAX,
        nprobe: int = DEFAULT_NPROBE,
        device_search: Callable[[Vectors], Any] | None = None,
        trained: faiss.IndexIVF | None = None,
        negative_ids: Iterable[int] | IdArray | None = None,
        negative_person_ids: Iterable[int] | IdArray = (),
        negative_embeddings: npt.NDArray[np.float32] | None = None,
        codec: str = "flat",
    ) -> None:
        """A snapshot of the gallery; the update methods keep it current.

        ``device_search(vectors)`` builds an exact searcher on an accelerator (one matrix product a
        batch, see sessions.torch_session.TorchExactSearch); FAISS on the CPU otherwise.
        ``trained``: the previous index's ``trained``, reused when the size still suits it.
        ``codec``: how an IVF index stores its vectors, "flat" or "sq8" (vectors.build_faiss_index).
        ``negative_ids`` (default 0..n-1) / ``negative_person_ids`` / ``negative_embeddings``: faces
        known not to be that person. Face ids are unique and not negative."""
        faces, people = _ids(face_ids), _ids(person_ids)
        vectors = as_vectors(embeddings)
        if not (len(faces) == len(people) == len(vectors)):
            raise ValueError("face_ids, person_ids and embeddings must have the same length")
        if len(faces) and (faces.min() < 0 or people.min() < 0):
            raise ValueError("face and person ids must not be negative")
        store = VectorStore(vectors, exact_max=exact_max, nprobe=nprobe, device_search=device_search,
                            trained=trained, codec=codec)
        self._setup(store, faces, people, person_galleries, exact_max,
                    Negatives.of(negative_ids, _ids(negative_person_ids), negative_embeddings))

    @classmethod
    def over_store(cls, store: Any, face_ids: IdArray, person_ids: IdArray,
                   person_galleries: Mapping[int, Iterable[int]] | None, *, exact_max: int,
                   negatives: Negatives) -> GalleryIndex:
        """An index over vectors already stored (shared.MappedVectorStore: a snapshot memory-mapped
        from a file), slot i holding ``face_ids[i]``."""
        index = cls.__new__(cls)
        index._setup(store, _ids(face_ids), _ids(person_ids), person_galleries, exact_max, negatives)
        return index

    def _setup(self, store: Any, faces: IdArray, people: IdArray,
               person_galleries: Mapping[int, Iterable[int]] | None, exact_max: int, negatives: Negatives) -> None:
        self._exact_max = exact_max
        self._store = store
        self.trained: faiss.IndexIVF | None = store.trained
        self.exact = store.exact
        count = len(faces)
        capacity = max(1024, count + count // 8)  # room for writes before the first doubling
        self._slot_face = np.full(capacity, -1, dtype=np.int64)
        self._slot_person = np.full(capacity, -1, dtype=np.int64)
        self._slot_face[:count], self._slot_person[:count] = faces, people
        self._size = count  # slots used, removed ones included
        self._live = count
        persons, counts = np.unique(people, return_counts=True)
        self._faces_of: dict[int, int] = dict(zip(persons.tolist(), counts.tolist(), strict=True))
        self._galleries = Galleries(person_galleries, people, capacity)
        self._negatives = negatives
        self._lock = _ReadWriteLock()
        self._writer = threading.Lock()  # one write at a time: its look-ups need no read lock

    @classmethod
    def empty(cls) -> GalleryIndex:
        return cls([], [], np.zeros((0, EMBEDDING_DIM), dtype=np.float32))

    def __len__(self) -> int:
        return self._live

    @property
    def person_count(self) -> int:
        return len(self._faces_of)

    @property
    def negative_count(self) -> int:
        return self._negatives.count

    def gallery_size(self, gallery_id: int) -> int:
        return self._galleries.size(gallery_id)

    @property
    def face_ids(self) -> IdArray:
        """The live faces' ids, in slot order (a copy)."""
        with self._lock.read():
            ids = self._slot_face[: self._size]
            return ids[ids >= 0]

    @property
    def person_ids(self) -> IdArray:
        """The live faces' person ids, in slot order (a copy)."""
        with self._lock.read():
            return self._slot_person[: self._size][self._slot_face[: self._size] >= 0]

    @property
    def rebuild_reason(self) -> str | None:
        """Why a fresh build would now serve better than this updated index, or None."""
        live, nlist = self._live, self._store.nlist
        if not self._store.on_device:
            if self.exact and live > self._exact_max:
                return f"{live} faces, past exact_max {self._exact_max}: IVF would search faster"
            if not self.exact and live <= self._exact_max:
                return f"{live} faces, within exact_max {self._exact_max}: an exact index fits"
            if nlist is not None and not cells_suit(nlist, live):
                return f"{live} faces for {nlist} IVF cells: {ivf_cells(live)} would suit them"
        hint: str | None = self._store.rebuild_hint()
        if hint:
            return hint
        removed = self._size - live
        if removed * 2 > self._size:
            return f"{removed} of {self._size} slots hold removed faces"
        return None

    # -- updates -------------------------------------------------------------------------------

    def upsert_faces(self, face_ids: Iterable[int] | IdArray, person_ids: Iterable[int] | IdArray,
                     embeddings: npt.NDArray[np.float32]) -> None:
        """Add faces, or replace those whose id is present (vector and person: a face may move to
        another person). A face written again unchanged is left in its slot."""
        faces, people, vectors = _ids(face_ids), _ids(person_ids), as_vectors(embeddings)
        if not (len(faces) == len(people) == len(vectors)):
            raise ValueError("face_ids, person_ids and embeddings must have the same length")
        if not len(faces):
            return
        if faces.min() < 0 or people.min() < 0:
            raise ValueError("face and person ids must not be negative")
        last = last_of_each(faces)
        faces, people, vectors = faces[last], people[last], vectors[last]
        with self._writer:
            old = self._slots_of(self._slot_face, faces)
            if len(old):
                # A replay (a change applied again after a rebuild) finds the face as it was: it
                # keeps its slot rather than spending a new one.
                where = _order_of(faces, self._slot_face[old])
                # An 8-bit codec reads back within ~0.005 a component; a changed embedding moves more.
                stored = self._store.get(old)
                close = (np.abs(stored - vectors[where]).max(axis=1) <= 0.02 if self._store.lossy
                         else np.all(stored == vectors[where], axis=1))
                same = (self._slot_person[old] == people[where]) & close
                if same.any():
                    fresh = np.ones(len(faces), dtype=bool)
                    fresh[where[same]] = False
                    faces, people, vectors, old = faces[fresh], people[fresh], vectors[fresh], old[~same]
            if not len(old) and not len(faces):
                return
            with self._lock.write():
                self._drop(old)
                self._append(faces, people, vectors)

    def remove_faces(self, face_ids: Iterable[int] | IdArray) -> None:
        """Remove these faces; absent ids are ignored."""
        faces = _ids(face_ids)
        with self._writer:
            slots = self._slots_of(self._slot_face, faces)
            if len(slots):
                with self._lock.write():
                    self._drop(slots)

    def remove_people(self, person_ids: Iterable[int] | IdArray) -> None:
        """Remove these people: their faces, gallery memberships and negatives."""
        people = _ids(person_ids)
        if not len(people):
            return
        with self._writer:
            slots = self._slots_of(self._slot_person, people)
            negatives = self._negatives
            if negatives.count and np.isin(negatives.person_ids, people).any():
                negatives = negatives.without(~np.isin(negatives.person_ids, people))
            with self._lock.write():
                self._drop(slots)
                self._galleries.remove_people(people.tolist())
                self._negatives = negatives

    def set_person_galleries(self, person_id: int, gallery_ids: Iterable[int]) -> None:
        """``person_id``'s memberships become exactly ``gallery_ids`` (none: in no gallery)."""
        person = int(person_id)
        galleries = [int(g) for g in gallery_ids]
        with self._writer:
            slots = self._slots_of(self._slot_person, np.array([person], dtype=np.int64))
            with self._lock.write():
                self._galleries.set_person(person, galleries, slots)

    def remove_gallery(self, gallery_id: int) -> None:
        """The gallery is gone: its people stay, in their other galleries."""
        with self._writer, self._lock.write():
            self._galleries.remove_gallery(int(gallery_id))

    def upsert_negatives(self, negative_ids: Iterable[int] | IdArray, person_ids: Iterable[int] | IdArray,
                         embeddings: npt.NDArray[np.float32]) -> None:
        """Add negatives, or replace those whose id is present."""
        with self._writer:
            negatives = self._negatives.upserted(_ids(negative_ids), _ids(person_ids), as_vectors(embeddings))
            with self._lock.write():
                self._negatives = negatives

    def remove_negatives(self, negative_ids: Iterable[int] | IdArray) -> None:
        """Remove these negatives; absent ids are ignored."""
        ids = _ids(negative_ids)
        with self._writer:
            gone = np.isin(self._negatives.ids, ids)
            if gone.any():
                negatives = self._negatives.without(~gone)
                with self._lock.write():
                    self._negatives = negatives

    def _slots_of(self, column: IdArray, ids: IdArray) -> IdArray:
        """Live slots whose ``column`` value is one of ``ids`` (removed slots hold -1, never asked)."""
        ids = ids[ids >= 0]
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        used = column[: self._size]
        if len(ids) == 1:
            return np.flatnonzero(used == ids[0])
        return np.flatnonzero(np.isin(used, ids))

    def _drop(self, slots: IdArray) -> None:
        """Remove live ``slots``; under the write lock."""
        if not len(slots):
            return
        people = self._slot_person[slots]
        self._store.remove(slots)
        self._galleries.remove_faces(slots, people)
        self._slot_face[slots] = -1
        self._slot_person[slots] = -1
        self._live -= len(slots)
        for person, count in zip(*np.unique(people, return_counts=True), strict=True):
            left = self._faces_of[int(person)] - int(count)
            if left:
                self._faces_of[int(person)] = left
            else:
                del self._faces_of[int(person)]

    def _append(self, faces: IdArray, people: IdArray, vectors: Vectors) -> None:
        """New slots for these faces (none of them live); under the write lock."""
        if not len(faces):
            return
        start, stop = self._size, self._size + len(faces)
        if stop > len(self._slot_face):
            capacity = max(stop, 2 * len(self._slot_face))
            self._slot_face = _grown(self._slot_face, capacity)
            self._slot_person = _grown(self._slot_person, capacity)
            self._galleries.grow(capacity)
        slots = np.arange(start, stop, dtype=np.int64)
        self._store.add(slots, vectors)
        self._slot_face[start:stop] = faces
        self._slot_person[start:stop] = people
        self._size, self._live = stop, self._live + len(faces)
        self._galleries.add_faces(slots, people)
        for person, count in zip(*np.unique(people, return_counts=True), strict=True):
            self._faces_of[int(person)] = self._faces_of.get(int(person), 0) + int(count)

    # -- search --------------------------------------------------------------------------------

    def search(
        self, queries: npt.NDArray[np.float32], k: int, *, gallery_id: int | None = None,
        negatives: bool = True,
    ) -> list[list[Match]]:
        """For each query, the best face of each of the ``k`` nearest *people*, nearest first.
        A person the query is closer to one of their negatives than to their nearest face is left
        out (``negatives=False``: kept, e.g. to measure what negatives change)."""
        queries = as_vectors(queries)
        with self._lock.read():
            selector, allowed, candidates = None, None, self._live
            if gallery_id is not None:
                slot_set = self._galleries.get(gallery_id)
                candidates = 0 if slot_set is None else slot_set.count
                if slot_set is not None and candidates:
                    allowed = slot_set.slots
                    selector = None if self._store.on_device else slot_set.selector()
            if k <= 0 or candidates == 0 or len(queries) == 0:
                return [[] for _ in range(len(queries))]
            screen = self._negatives if negatives and self._negatives.count else None
            # People have several faces: fetch more neighbours than people wanted, widen if too few
            # (or too few are left once negatives have removed some).
            fetch = min(candidates, k * 4 + 8)
            while True:
                distances, slots = self._store.search(queries, fetch, selector, allowed)
                if screen is not None:
                    results = [screen.screen(query, self._per_person(d, s, fetch))[:k]
                               for query, d, s in zip(queries, distances, slots, strict=True)]
                else:
                    results = [self._per_person(d, s, k) for d, s in zip(distances, slots, strict=True)]
                if fetch >= candidates or all(len(r) >= k for r in results):
                    return results
                fetch = min(candidates, fetch * 4)

    def _per_person(self, distances: np.ndarray, slots: np.ndarray, k: int) -> list[Match]:
        # -1: fewer found than asked; a removed slot: only ever a far flat row or an accelerator's
        # masked one, never nearer than a live face, but never named either.
        found = slots >= 0
        found &= self._slot_face[np.where(found, slots, 0)] >= 0
        slots, distances = slots[found], distances[found]
        persons = self._slot_person[slots]
        # np.unique keeps each person's first (nearest) occurrence; then restore distance order.
        _, first = np.unique(persons, return_index=True)
        first.sort()
        first = first[:k]
        return [
            Match(face_id=int(self._slot_face[slots[i]]), person_id=int(persons[i]),
                  distance=float(np.sqrt(max(float(distances[i]), 0.0))))
            for i in first
        ]


def _order_of(wanted: IdArray, found: IdArray) -> IdArray:
    """For each of ``found`` (values all in ``wanted``, which is unique), its position in ``wanted``."""
    order = np.argsort(wanted)
    return order[np.searchsorted(wanted, found, sorter=order)]


def _grown(array: IdArray, capacity: int) -> IdArray:
    grown = np.full(capacity, -1, dtype=np.int64)
    grown[: len(array)] = array
    return grown
