"""One index per machine: a built index written once to a folder, memory-mapped by every process.

Every API worker, camera worker and Celery worker of a machine used to hold its own copy of the
index (~1 GiB per million faces each, docs/performance.md). A snapshot written here is opened with
FAISS's read-only memory mapping: the vectors' pages live in the page cache once for the machine,
whatever the number of processes. Each process keeps what changed since the snapshot itself:
- faces added since: a small in-memory flat index (slots after the snapshot's), searched exactly;
- faces removed from the snapshot: cleared bits of a live-slot bitmap that every search of the
  mapped part filters with (the file is never written);
- memberships, negatives, slot -> face / person arrays: per process, as before (16 bytes a face).
When the changes grow past 1 % of the snapshot (``rebuild_hint``), the index asks for a fresh
build, which the caller writes as the next snapshot for the machine.

A snapshot folder holds ``vectors.faiss`` (FAISS's own format, flat or IVF with its direct map),
``trained.faiss`` (the empty trained IVF, so the next build skips the k-means) and ``meta.npz``
(plain arrays, read with ``allow_pickle=False``: nothing is unpickled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.index.gallery import GalleryIndex
from face_engine.index.negatives import Negatives
from face_engine.index.vectors import FAR, IdArray, Vectors, as_vectors, codec_of, search_params
from face_engine.types import EMBEDDING_DIM

VECTORS, TRAINED, META = "vectors.faiss", "trained.faiss", "meta.npz"
DELTA_MIN = 5_000  # changes since the snapshot before a new one is asked for (or 1 % of it)


class MappedVectorStore:
    """The vector store (vectors.VectorStore's interface) over a memory-mapped snapshot plus this
    process's additions since; slots ``0..base_count-1`` are the snapshot's."""

    on_device = False

    def __init__(self, folder: Path, *, nprobe: int, mapped: bool = True) -> None:
        """``mapped=False``: read into this process's memory instead (what the benchmark compares)."""
        path = folder / VECTORS
        with path.open("rb") as head:
            flat = head.read(3) == b"IxF"  # FAISS's fourcc for the flat indexes ("IxF2": L2)
        # Flat codes and IVF lists are mapped by two different FAISS readers, one flag each.
        flags = faiss.IO_FLAG_MMAP_IFC if flat else faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
        flags = flags if mapped else 0
        base = faiss.read_index(str(path), flags)
        self._base = base
        self._ivf: faiss.IndexIVF | None = base if isinstance(base, faiss.IndexIVF) else None
        if self._ivf is not None:
            self._ivf.nprobe = min(nprobe, self._ivf.nlist)
            self._ivf.parallel_mode = 1  # as vectors.build_faiss_index: threads split the probed cells
        self.exact = self._ivf is None
        self.lossy = self._ivf is not None and codec_of(self._ivf) != "flat"
        self.nprobe = nprobe
        trained = folder / TRAINED
        self.trained: faiss.IndexIVF | None = (
            cast(faiss.IndexIVF, faiss.read_index(str(trained))) if trained.exists() else None)
        self.base_count = int(base.ntotal)
        # Bit i set: snapshot slot i is live. Only consulted once a snapshot face has been removed.
        self._live_bits = np.packbits(np.ones(self.base_count, dtype=bool), bitorder="little")
        self._base_removed = 0
        self._live_selector: faiss.IDSelector | None = None
        self._delta = faiss.IndexFlatL2(EMBEDDING_DIM)
        self._delta_removed = 0

    @property
    def nlist(self) -> int | None:
        return None if self._ivf is None else int(self._ivf.nlist)

    @property
    def delta_count(self) -> int:
        return int(self._delta.ntotal)

    def rebuild_hint(self) -> str | None:
        changed = self.delta_count + self._base_removed
        # The additions are searched exactly: 1 % of a million is ~0.3 ms a query on two cores.
        if changed > max(DELTA_MIN, self.base_count // 100):
            return f"{changed} faces changed since the shared snapshot of {self.base_count}"
        return None

    def add(self, slots: IdArray, vectors: Vectors) -> None:
        if not len(slots):
            return
        assert int(slots[0]) == self.base_count + self._delta.ntotal, "slots are appended in order"
        self._delta.add(vectors)

    def remove(self, slots: IdArray) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        base, delta = slots[slots < self.base_count], slots[slots >= self.base_count] - self.base_count
        if len(base):
            np.bitwise_and.at(self._live_bits, base >> 3, ~(np.uint8(1) << (base & 7).astype(np.uint8)))
            self._base_removed += len(base)
            if self._live_selector is None:  # reads the bitmap in place: later removals need no new one
                self._live_selector = faiss.IDSelectorBitmap(len(self._live_bits), faiss.swig_ptr(self._live_bits))
        if len(delta):
            self._delta_rows()[delta] = FAR  # as the flat store: far from every query, never reached
            self._delta_removed += len(delta)

    def get(self, slots: IdArray) -> Vectors:
        slots = np.asarray(slots, dtype=np.int64)
        out = np.empty((len(slots), EMBEDDING_DIM), dtype=np.float32)
        in_base = slots < self.base_count
        if in_base.any():
            out[in_base] = self._base.reconstruct_batch(np.ascontiguousarray(slots[in_base]))
        if (~in_base).any():
            out[~in_base] = self._delta_rows()[slots[~in_base] - self.base_count]
        return out

    def _delta_rows(self) -> npt.NDArray[np.float32]:
        return faiss.rev_swig_ptr(self._delta.get_xb(), self._delta.ntotal * EMBEDDING_DIM).reshape(-1, EMBEDDING_DIM)

    def search(self, queries: Vectors, k: int, selector: faiss.IDSelector | None,
               allowed: Callable[[], IdArray] | None) -> tuple[npt.NDArray[np.float32], IdArray]:
        """As VectorStore.search: the snapshot's nearest (skipping removed slots) merged with the
        nearest of the faces added since."""
        parts = []
        if self.base_count:
            parts.append(self._search_base(queries, min(k, self.base_count), selector))
        live_delta = self._delta.ntotal - self._delta_removed
        if live_delta > 0:
            parts.append(self._search_delta(queries, min(k, int(self._delta.ntotal)), allowed))
        if not parts:
            return (np.full((len(queries), k), np.inf, dtype=np.float32),
                    np.full((len(queries), k), -1, dtype=np.int64))
        distances = np.concatenate([p[0] for p in parts], axis=1)
        slots = np.concatenate([p[1] for p in parts], axis=1)
        distances = np.where(slots >= 0, distances, np.inf).astype(np.float32)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        distances, slots = np.take_along_axis(distances, order, 1), np.take_along_axis(slots, order, 1)
        if slots.shape[1] < k:  # fewer stored than asked: pad as FAISS does
            pad = k - slots.shape[1]
            distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
            slots = np.pad(slots, ((0, 0), (0, pad)), constant_values=-1)
        return distances, slots

    def _search_base(self, queries: Vectors, k: int,
                     selector: faiss.IDSelector | None) -> tuple[npt.NDArray[np.float32], IdArray]:
        live = self._live_selector
        if live is not None:
            # The caller holds ``selector``; the And wrapper and ``live`` are kept alive here until
            # the search returns (params.sel does not own them).
            selector = live if selector is None else faiss.IDSelectorAnd(selector, live)
        distances, slots = self._base.search(queries, k, params=search_params(self._ivf, selector))
        return distances, slots

    def _search_delta(self, queries: Vectors, k: int,
                      allowed: Callable[[], IdArray] | None) -> tuple[npt.NDArray[np.float32], IdArray]:
        params: faiss.SearchParameters | None = None
        keep: Any = None
        if allowed is not None:  # a gallery: its slots among the additions, as delta rows
            slots = allowed()
            rows = slots[slots >= self.base_count] - self.base_count
            if not len(rows):
                return (np.full((len(queries), 0), np.inf, dtype=np.float32),
                        np.zeros((len(queries), 0), dtype=np.int64))
            keep = faiss.IDSelectorBatch(rows)
            params = faiss.SearchParameters()
            params.sel = keep
        distances, rows = self._delta.search(queries, k, params=params)
        return distances, np.where(rows >= 0, rows + self.base_count, -1)


def write_snapshot(folder: Path, index: GalleryIndex, memberships: Mapping[int, list[int]]) -> None:
    """Write a freshly built ``index`` (no change applied since its build: slot i is its i-th
    face) and the memberships it was built with into ``folder`` (which must exist)."""
    store = index._store  # noqa: SLF001 - the snapshot is the store's own FAISS index
    store.write(folder / VECTORS, folder / TRAINED)
    pairs = [(person, gallery) for person, galleries in memberships.items() for gallery in galleries]
    member_people, member_galleries = (np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T if pairs
                                       else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    negatives = index._negatives  # noqa: SLF001
    np.savez(folder / META, face_ids=index.face_ids, person_ids=index.person_ids,
             member_people=member_people, member_galleries=member_galleries,
             negative_ids=negatives.ids, negative_person_ids=negatives.person_ids,
             negative_embeddings=negatives.vectors, exact_max=np.int64(index._exact_max))  # noqa: SLF001


def open_snapshot(folder: Path, *, nprobe: int, mapped: bool = True) -> GalleryIndex:
    """The index written by ``write_snapshot``, its vectors memory-mapped, ready for updates."""
    store = MappedVectorStore(folder, nprobe=nprobe, mapped=mapped)
    with np.load(folder / META, allow_pickle=False) as meta:
        arrays = {name: meta[name] for name in meta.files}
    if len(arrays["face_ids"]) != store.base_count:
        raise ValueError(f"{folder}: {len(arrays['face_ids'])} faces for {store.base_count} vectors")
    memberships: dict[int, list[int]] = {}
    for person, gallery in zip(arrays["member_people"].tolist(), arrays["member_galleries"].tolist(), strict=True):
        memberships.setdefault(person, []).append(gallery)
    negatives = Negatives(arrays["negative_ids"], arrays["negative_person_ids"],
                          as_vectors(arrays["negative_embeddings"]))
    return GalleryIndex.over_store(store, arrays["face_ids"], arrays["person_ids"], memberships,
                                   exact_max=int(arrays["exact_max"]), negatives=negatives)
