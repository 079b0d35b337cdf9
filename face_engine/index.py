"""Gallery vector index: FAISS search ranked per person, filtered per gallery.

Exact (a flat L2 index) up to ``exact_max`` faces; above that an IVF index (inverted lists over
k-means cells) whose ``nprobe`` trades recall for speed. IVF rather than HNSW because an index is
rebuilt from the database whenever it changes, and IVF builds a million vectors in seconds where
HNSW takes minutes on a small CPU.

An index is an immutable snapshot built from arrays; a change builds a new snapshot and the
caller swaps the reference, so concurrent searches never see a half-updated index. FAISS ids are
row positions, so face and person ids are looked up in numpy arrays (no per-row Python objects).

Negatives ("this face is not X", see the corrections app) are kept beside the index, grouped by
person: a query closer to one of X's negatives than to X's nearest face is not answered with X.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.types import EMBEDDING_DIM, Match

IdArray = npt.NDArray[np.int64]
DEFAULT_EXACT_MAX = 100_000
DEFAULT_NPROBE = 32


def _ids(values: Iterable[int] | IdArray) -> IdArray:
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64)


def _clone_ivf(index: faiss.IndexIVF) -> faiss.IndexIVF:
    # faiss's Python clone_index already returns the IVF class, owning its copy; downcast_index
    # would wrap the same pointer a second time and free it with the first wrapper.
    return cast(faiss.IndexIVF, faiss.clone_index(index))


def ivf_cells(count: int) -> int:
    """IVF cells for ``count`` vectors: 1.5√n of ~0.7√n vectors each. Measured at 1M on 2 cores
    with nprobe 32: p50 0.46 ms, recall@1 0.991, build 6.7 s (2√n: 0.44 ms, 0.993, 10.2 s;
    √n: 0.77 ms, 0.990, 2.9 s)."""
    return int(min(16384, max(16, 1.5 * math.sqrt(count))))


def build_faiss_index(vectors: npt.NDArray[np.float32], *, exact_max: int = DEFAULT_EXACT_MAX,
                      nprobe: int = DEFAULT_NPROBE, trained: faiss.IndexIVF | None = None) -> faiss.Index:
    """An empty index for ``vectors`` (the caller adds them): flat up to ``exact_max`` vectors,
    else IVF-Flat, trained here on a sample of them, or a copy
    of ``trained`` (an empty trained IVF index, see ``GalleryIndex.trained``) when that one has
    about the right number of cells, which skips the k-means (the embedding space does not move)."""
    count = len(vectors)
    index: faiss.Index
    if count <= exact_max:
        index = faiss.IndexFlatL2(EMBEDDING_DIM)
    else:
        cells = ivf_cells(count)
        ivf: faiss.IndexIVF
        if trained is not None and 0.75 <= trained.nlist / cells <= 1.5:
            ivf = _clone_ivf(trained)
        else:
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(EMBEDDING_DIM), EMBEDDING_DIM, cells)
            ivf.cp.niter = 10
            rng = np.random.default_rng(0)
            # 39 points a cell, the fewest k-means is meant to get: a million trains in seconds.
            ivf.train(vectors[rng.choice(count, size=min(count, cells * 39), replace=False)])
        ivf.nprobe = min(nprobe, ivf.nlist)
        # Threads split the probed cells rather than the queries: a request's few faces use every
        # core (measured at 1M on 2 cores: one query 0.43 ms against 0.67, a 1,200 batch as fast).
        ivf.parallel_mode = 1
        index = ivf
    return index


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
        device_search: Callable[[npt.NDArray[np.float32]], Any] | None = None,
        trained: faiss.IndexIVF | None = None,
        negative_person_ids: Iterable[int] | IdArray = (),
        negative_embeddings: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """``device_search(vectors)`` builds an exact searcher on an accelerator (one matrix
        product a batch, see sessions.torch_session.TorchExactSearch); FAISS on the CPU otherwise.
        ``trained``: the previous index's ``trained``, reused when the size still suits it.
        ``negative_person_ids``/``negative_embeddings``: faces known not to be that person."""
        self.face_ids = _ids(face_ids)
        self.person_ids = _ids(person_ids)
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if not (len(self.face_ids) == len(self.person_ids) == len(vectors)):
            raise ValueError("face_ids, person_ids and embeddings must have the same length")
        self._device = device_search(vectors) if device_search is not None else None
        self._index = build_faiss_index(vectors if self._device is None else vectors[:0],
                                        exact_max=exact_max, nprobe=nprobe, trained=trained)
        # An empty copy of a trained IVF index, for the next rebuild to skip the training.
        self.trained: faiss.IndexIVF | None = (
            _clone_ivf(self._index) if isinstance(self._index, faiss.IndexIVF) else None)
        if len(vectors) and self._device is None:
            self._index.add(vectors)
        self._count = len(vectors)
        self.exact = self._device is not None or isinstance(self._index, faiss.IndexFlat)
        self._nprobe = nprobe
        self._gallery_rows: dict[int, IdArray] = {}
        members: dict[int, set[int]] = {}
        for person_id, galleries in (person_galleries or {}).items():
            for gallery_id in galleries:
                members.setdefault(int(gallery_id), set()).add(int(person_id))
        for gallery_id, people in members.items():
            rows = np.flatnonzero(np.isin(self.person_ids, np.fromiter(people, dtype=np.int64)))
            self._gallery_rows[gallery_id] = rows.astype(np.int64)
        self._negatives = _Negatives(_ids(negative_person_ids), negative_embeddings)

    @classmethod
    def empty(cls) -> GalleryIndex:
        return cls([], [], np.zeros((0, EMBEDDING_DIM), dtype=np.float32))

    def __len__(self) -> int:
        return self._count

    @property
    def negative_count(self) -> int:
        return self._negatives.count

    @property
    def person_count(self) -> int:
        return len(np.unique(self.person_ids))

    def gallery_size(self, gallery_id: int) -> int:
        return len(self._gallery_rows.get(gallery_id, ()))

    def _params(self, gallery_id: int | None) -> tuple[int, faiss.SearchParameters | None]:
        if gallery_id is None:
            return len(self), None
        rows = self._gallery_rows.get(gallery_id, np.zeros(0, dtype=np.int64))
        params: faiss.SearchParameters
        if self.exact:
            params = faiss.SearchParameters()
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = self._nprobe
        params.sel = faiss.IDSelectorBatch(rows)
        return len(rows), params

    def search(
        self, queries: npt.NDArray[np.float32], k: int, *, gallery_id: int | None = None,
        negatives: bool = True,
    ) -> list[list[Match]]:
        """For each query, the best face of each of the ``k`` nearest *people*, nearest first.
        A person the query is closer to one of their negatives than to their nearest face is left
        out (``negatives=False``: kept, e.g. to measure what negatives change)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        candidates, params = self._params(gallery_id)
        if k <= 0 or candidates == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        screen = negatives and self._negatives.count > 0
        # People have several faces: fetch more neighbours than people wanted, widen if too few
        # (or too few are left once negatives have removed some).
        fetch = min(candidates, k * 4 + 8)
        while True:
            if self._device is not None:
                allowed = None if gallery_id is None else self._gallery_rows.get(gallery_id)
                distances, rows = self._device.search(queries, fetch, allowed)
            else:
                distances, rows = self._index.search(queries, fetch, params=params)
            if screen:
                results = [self._negatives.screen(query, self._per_person(d, r, fetch))[:k]
                           for query, d, r in zip(queries, distances, rows, strict=True)]
            else:
                results = [self._per_person(d, r, k) for d, r in zip(distances, rows, strict=True)]
            if fetch >= candidates or all(len(r) >= k for r in results):
                return results
            fetch = min(candidates, fetch * 4)

    def _per_person(self, distances: np.ndarray, rows: np.ndarray, k: int) -> list[Match]:
        found = rows >= 0
        rows, distances = rows[found], distances[found]
        persons = self.person_ids[rows]
        # np.unique keeps each person's first (nearest) occurrence; then restore distance order.
        _, first = np.unique(persons, return_index=True)
        first.sort()
        first = first[:k]
        return [
            Match(face_id=int(self.face_ids[rows[i]]), person_id=int(persons[i]),
                  distance=float(np.sqrt(max(float(distances[i]), 0.0))))
            for i in first
        ]


class _Negatives:
    """Negative faces grouped by person: rows sorted by person id, one slice per person."""

    def __init__(self, person_ids: IdArray, embeddings: npt.NDArray[np.float32] | None) -> None:
        vectors = (np.zeros((0, EMBEDDING_DIM), dtype=np.float32) if embeddings is None
                   else np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM))
        if len(person_ids) != len(vectors):
            raise ValueError("negative_person_ids and negative_embeddings must have the same length")
        order = np.argsort(person_ids, kind="stable")
        self.vectors = vectors[order]
        self.persons, starts = np.unique(person_ids[order], return_index=True)
        self.bounds = np.append(starts, len(order)).astype(np.int64)
        self.count = len(vectors)

    def screen(self, query: npt.NDArray[np.float32], matches: list[Match]) -> list[Match]:
        """``matches`` without the people ``query`` is closer to a negative of than to their face."""
        if not matches:
            return matches
        people = np.fromiter((m.person_id for m in matches), dtype=np.int64, count=len(matches))
        slots = np.searchsorted(self.persons, people)
        slots[slots >= len(self.persons)] = 0
        has = self.persons[slots] == people if len(self.persons) else np.zeros(len(people), dtype=bool)
        kept = []
        for match, slot, flagged in zip(matches, slots, has, strict=True):
            if flagged:
                own = self.vectors[self.bounds[slot]:self.bounds[slot + 1]]
                if float(np.min(np.linalg.norm(own - query, axis=1))) < match.distance:
                    continue
            kept.append(match)
        return kept
