"""Gallery vector index: exact FAISS search, ranked per person, filtered per gallery.

An index is an immutable snapshot built from arrays; a change builds a new snapshot and the
caller swaps the reference, so concurrent searches never see a half-updated index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.types import EMBEDDING_DIM, Match

IdArray = npt.NDArray[np.int64]


class GalleryIndex:
    def __init__(
        self,
        face_ids: Iterable[int] | IdArray,
        person_ids: Iterable[int] | IdArray,
        embeddings: npt.NDArray[np.float32],
        person_galleries: Mapping[int, Iterable[int]] | None = None,
    ) -> None:
        self.face_ids = np.asarray(list(face_ids) if not isinstance(face_ids, np.ndarray) else face_ids, dtype=np.int64)
        self.person_ids = np.asarray(
            list(person_ids) if not isinstance(person_ids, np.ndarray) else person_ids, dtype=np.int64
        )
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if not (len(self.face_ids) == len(self.person_ids) == len(vectors)):
            raise ValueError("face_ids, person_ids and embeddings must have the same length")
        self._person_of_face = dict(zip(self.face_ids.tolist(), self.person_ids.tolist(), strict=True))
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(EMBEDDING_DIM))
        if len(vectors):
            self._index.add_with_ids(vectors, self.face_ids)
        self._gallery_faces: dict[int, IdArray] = {}
        if person_galleries:
            by_gallery: dict[int, list[int]] = {}
            faces_of_person: dict[int, list[int]] = {}
            for face_id, person_id in self._person_of_face.items():
                faces_of_person.setdefault(person_id, []).append(face_id)
            for person_id, galleries in person_galleries.items():
                for gallery_id in {int(g) for g in galleries}:  # a membership listed twice counts once
                    by_gallery.setdefault(gallery_id, []).extend(faces_of_person.get(person_id, []))
            self._gallery_faces = {g: np.asarray(ids, dtype=np.int64) for g, ids in by_gallery.items()}

    @classmethod
    def empty(cls) -> GalleryIndex:
        return cls([], [], np.zeros((0, EMBEDDING_DIM), dtype=np.float32))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def person_count(self) -> int:
        return len(np.unique(self.person_ids))

    def gallery_size(self, gallery_id: int) -> int:
        return len(self._gallery_faces.get(gallery_id, ()))

    def search(
        self, queries: npt.NDArray[np.float32], k: int, *, gallery_id: int | None = None
    ) -> list[list[Match]]:
        """For each query, the best face of each of the ``k`` nearest *people*, nearest first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if gallery_id is None:
            candidates = len(self)
            params = None
        else:
            allowed = self._gallery_faces.get(gallery_id, np.zeros(0, dtype=np.int64))
            candidates = len(allowed)
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(allowed)
        if k <= 0 or candidates == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # People have several faces: fetch more neighbours than people wanted, widen if too few.
        fetch = min(candidates, k * 4 + 8)
        while True:
            distances, ids = self._index.search(queries, fetch, params=params)
            results = [self._per_person(d, i, k) for d, i in zip(distances, ids, strict=True)]
            if fetch >= candidates or all(len(r) >= k for r in results):
                return results
            fetch = min(candidates, fetch * 4)

    def _per_person(self, distances: np.ndarray, ids: np.ndarray, k: int) -> list[Match]:
        best: dict[int, Match] = {}
        for squared, face_id in zip(distances.tolist(), ids.tolist(), strict=True):
            if face_id < 0:
                continue
            person_id = self._person_of_face[face_id]
            if person_id not in best:
                distance = float(np.sqrt(max(squared, 0.0)))  # faiss gives squared L2
                best[person_id] = Match(face_id=face_id, person_id=person_id, distance=distance)
                if len(best) == k:
                    break
        return list(best.values())
