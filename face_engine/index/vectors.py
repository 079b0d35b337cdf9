"""The vectors of a gallery index, by slot: FAISS on the CPU (flat or IVF) or an exact searcher on an
accelerator, with rows added and removed in place.

A slot is a face's FAISS id: slots are numbered in the order faces arrive and never reused until
the next full build, so an addition is an append and a removal never renumbers anything.
- Flat: FAISS's row number *is* the slot (rows are only ever appended). A removed row is not cut
  out (that would shift every row after it, O(n)) but overwritten with a vector far from anything
  (FAR), so no search reaches it while the caller asks for at most as many neighbours as there are
  live faces; searches keep FAISS's fast BLAS path (no id map, no selector).
- IVF: ``add_with_ids`` with the slots, and a hashtable direct map so that ``remove_ids`` finds a
  slot's list entry at once instead of scanning every inverted list.
- Accelerator: the searcher's rows are the slots (see sessions.torch_session.TorchExactSearch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.types import EMBEDDING_DIM

IdArray = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
DEFAULT_EXACT_MAX = 100_000
DEFAULT_NPROBE = 32
CODECS = ("flat", "sq8")
# Squared distance ~1.3e14 from any unit-scale embedding: far past every live face, finite in float32.
FAR = 1e6
HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # missing from faiss's stubs


@contextmanager
def _one_thread(count: int) -> Iterator[None]:
    """FAISS on this thread alone for a write of a few vectors. With the IVF's parallel_mode 1 an
    add of one vector across OpenMP threads took 5–8 ms at 200k faces on 2 cores (and tens of ms
    while the other core was busy), 0.02 ms on one thread. OpenMP's thread count is per calling
    thread: concurrent searches on other threads keep every core."""
    if count > 1000:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def as_vectors(embeddings: Any) -> Vectors:
    return np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)


def _clone_ivf(index: faiss.IndexIVF) -> faiss.IndexIVF:
    # faiss's Python clone_index already returns the IVF class, owning its copy; downcast_index
    # would wrap the same pointer a second time and free it with the first wrapper.
    return cast(faiss.IndexIVF, faiss.clone_index(index))


def ivf_cells(count: int) -> int:
    """IVF cells for ``count`` vectors: 1.5√n of ~0.7√n vectors each. Measured at 1M on 2 cores
    with nprobe 32: p50 0.46 ms, recall@1 0.991, build 6.7 s (2√n: 0.44 ms, 0.993, 10.2 s;
    √n: 0.77 ms, 0.990, 2.9 s)."""
    return int(min(16384, max(16, 1.5 * math.sqrt(count))))


def cells_suit(nlist: int, count: int) -> bool:
    """Whether ``nlist`` trained cells still suit ``count`` vectors: within 0.75–1.5× of the cells
    a fresh build would choose (a count within about 0.44–1.8× of the trained one). One rule for
    reusing trained cells in a build and for asking an updated index to be rebuilt."""
    return 0.75 <= nlist / ivf_cells(count) <= 1.5


def codec_of(index: faiss.Index) -> str:
    return "sq8" if isinstance(index, faiss.IndexIVFScalarQuantizer) else "flat"


def build_faiss_index(vectors: Vectors, *, exact_max: int = DEFAULT_EXACT_MAX, nprobe: int = DEFAULT_NPROBE,
                      trained: faiss.IndexIVF | None = None, codec: str = "flat") -> faiss.Index:
    """An empty index for ``vectors`` (the caller adds them): flat up to ``exact_max`` vectors,
    else IVF, its vectors stored whole (``codec`` "flat") or as 8-bit scalars ("sq8": a third of
    the memory, distances within ~0.01, docs/performance.md *Compression*), trained here on a
    sample of them, or a copy of ``trained`` (an empty trained IVF index, see
    ``GalleryIndex.trained``) when that one has the codec and about the right number of cells,
    which skips the k-means (the embedding space does not move)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    count = len(vectors)
    index: faiss.Index
    if count <= exact_max:
        index = faiss.IndexFlatL2(EMBEDDING_DIM)
    else:
        cells = ivf_cells(count)
        ivf: faiss.IndexIVF
        if trained is not None and cells_suit(trained.nlist, count) and codec_of(trained) == codec:
            ivf = _clone_ivf(trained)
        else:
            if codec == "sq8":
                ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(EMBEDDING_DIM), EMBEDDING_DIM, cells,
                                                    faiss.ScalarQuantizer.QT_8bit)
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


def search_params(ivf: faiss.IndexIVF | None, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """FAISS's parameters for a search filtered by ``selector`` (None: unfiltered, the defaults)."""
    if selector is None:
        return None
    params: faiss.SearchParameters
    if ivf is not None:
        params = ivf_params = faiss.SearchParametersIVF()
        ivf_params.nprobe = ivf.nprobe
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    return params


class VectorStore:
    """Vectors by slot, searched exactly or through IVF cells; slots ``0..len(vectors)-1`` at first."""

    def __init__(self, vectors: Vectors, *, exact_max: int, nprobe: int,
                 device_search: Callable[[Vectors], Any] | None, trained: faiss.IndexIVF | None,
                 codec: str = "flat") -> None:
        self.nprobe = nprobe
        self.trained: faiss.IndexIVF | None = None
        self._device = device_search(vectors) if device_search is not None else None
        self._index: faiss.Index | None = None
        self._ivf: faiss.IndexIVF | None = None
        if self._device is None:
            index = build_faiss_index(vectors, exact_max=exact_max, nprobe=nprobe, trained=trained, codec=codec)
            if isinstance(index, faiss.IndexIVF):
                # An empty copy of the trained cells, for the next build to skip the training.
                self.trained = _clone_ivf(index)
                index.set_direct_map_type(HASHTABLE)
                index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
                self._ivf = index
            else:
                index.add(vectors)
            self._index = index
        self.exact = self._ivf is None
        self.on_device = self._device is not None
        # Stored vectors read back (get) are approximations: a replay compares them with a tolerance.
        self.lossy = self._ivf is not None and codec_of(self._ivf) != "flat"

    @property
    def nlist(self) -> int | None:
        return None if self._ivf is None else int(self._ivf.nlist)

    def rebuild_hint(self) -> str | None:
        return None  # its own shape is judged by GalleryIndex.rebuild_reason

    def write(self, vectors_path: Path, trained_path: Path) -> None:
        """Write the FAISS index (and the empty trained IVF) for shared.open_snapshot to map."""
        if self._index is None:
            raise ValueError("an accelerator's index is not written: it lives in that device's memory")
        faiss.write_index(self._index, str(vectors_path))
        if self.trained is not None:
            faiss.write_index(self.trained, str(trained_path))

    def add(self, slots: IdArray, vectors: Vectors) -> None:
        """Store ``vectors`` at ``slots``: the next slots in order (flat and accelerator rows are slots)."""
        if not len(slots):
            return
        if self._device is not None:
            self._device.add(vectors)
        elif self._ivf is not None:
            with _one_thread(len(slots)):
                self._ivf.add_with_ids(vectors, slots)
        else:
            assert self._index is not None and int(slots[0]) == self._index.ntotal
            with _one_thread(len(slots)):
                self._index.add(vectors)

    def remove(self, slots: IdArray) -> None:
        """Never found by a search again (slots stored and not yet removed)."""
        if not len(slots):
            return
        if self._device is not None:
            self._device.remove(slots)
        elif self._ivf is not None:
            slots = np.ascontiguousarray(slots, dtype=np.int64)
            # The hashtable direct map removes by an IDSelectorArray only (a batch would scan the lists).
            with _one_thread(len(slots)):
                self._ivf.remove_ids(faiss.IDSelectorArray(len(slots), faiss.swig_ptr(slots)))
        else:
            assert self._index is not None
            flat = cast(faiss.IndexFlat, self._index)
            rows = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * EMBEDDING_DIM).reshape(-1, EMBEDDING_DIM)
            rows[slots] = FAR

    def get(self, slots: IdArray) -> Vectors:
        """The stored vectors of live ``slots``."""
        if self._device is not None:
            return cast(Vectors, self._device.get(slots))
        if self._ivf is not None:
            with _one_thread(len(slots)):
                return self._ivf.reconstruct_batch(np.ascontiguousarray(slots, dtype=np.int64))
        assert self._index is not None
        flat = cast(faiss.IndexFlat, self._index)
        rows = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * EMBEDDING_DIM).reshape(-1, EMBEDDING_DIM)
        return cast(Vectors, rows[slots].copy())

    def search(self, queries: Vectors, k: int, selector: faiss.IDSelector | None,
               allowed: Callable[[], IdArray] | None) -> tuple[npt.NDArray[np.float32], IdArray]:
        """(squared distances, slots; -1 where fewer were found), nearest first. ``selector`` (FAISS)
        or ``allowed()`` (the accelerator: the slots themselves) restrict the search; ``k`` must not
        exceed the live vectors searched (removed flat rows are only far, not gone)."""
        if self._device is not None:
            distances, slots = self._device.search(queries, k, None if allowed is None else allowed())
            return distances, slots
        assert self._index is not None
        # The caller holds ``selector``: params.sel does not keep it alive.
        distances, slots = self._index.search(queries, k, params=search_params(self._ivf, selector))
        return distances, slots
