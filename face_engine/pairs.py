"""Pairs of labels (people) whose vectors come closer than a radius: one FAISS range search of
every vector against all the others, then numpy groups the hits per label pair. No Python loop
over vectors or pairs, so a gallery of 10,000 people (20,000 faces) takes about a second on
two cores (docs/performance.md, ``python -m loadtest.duplicates``).

Exact (a flat index: BLAS computes the distances a block of queries at a time) up to
``exact_max`` vectors. Measured on 2 busy cores, the exact search beats an IVF range search at
every size tried (20,000 faces: 2.9 s against 21 s finding 88 % of the pairs; 50,000: 21 s against
50 s and 93 %): IVF's range search probes whole cells without BLAS. Its cost grows as n², so
above ``exact_max`` the IVF index of face_engine.index takes over (a pair is then found when
either face finds the other), trading pairs for time on a gallery of a million faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.index import DEFAULT_NPROBE, build_faiss_index
from face_engine.types import EMBEDDING_DIM

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
# A flat self-search costs n² distances: 50,000 vectors take ~20 s on two busy cores, 200,000 minutes.
DEFAULT_PAIRS_EXACT_MAX = 200_000
QUERY_BLOCK = 4096


@dataclass(frozen=True)
class LabelPairs:
    """One entry per pair of different labels with some vectors within the radius, nearest first.

    ``label_a`` < ``label_b``; ``row_a``/``row_b`` are the rows (of the input) of the closest two
    vectors, at ``distance`` (Euclidean); ``count`` is how many vector pairs are within the radius.
    """

    label_a: IdArray
    label_b: IdArray
    row_a: IdArray
    row_b: IdArray
    distance: FloatArray
    count: IdArray

    def __len__(self) -> int:
        return len(self.label_a)


def _empty() -> LabelPairs:
    ids = np.zeros(0, dtype=np.int64)
    return LabelPairs(ids, ids, ids, ids, np.zeros(0, dtype=np.float32), ids)


def close_pairs(
    vectors: npt.NDArray[np.float32], labels: IdArray, radius: float, *,
    exact_max: int = DEFAULT_PAIRS_EXACT_MAX, nprobe: int = DEFAULT_NPROBE,
) -> LabelPairs:
    """Every pair of different ``labels`` with two vectors at most ``radius`` apart."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(vectors):
        raise ValueError("vectors and labels must have the same length")
    count = len(vectors)
    if count < 2 or not radius > 0:
        return _empty()
    index = build_faiss_index(vectors, exact_max=exact_max, nprobe=nprobe)
    index.add(vectors)
    exact = isinstance(index, faiss.IndexFlat)
    # FAISS compares squared L2 distances and keeps those strictly under the radius: nudged up by
    # one float so that a pair exactly at the threshold counts, as face_engine.matching.is_match says.
    squared = float(np.nextafter(np.float32(radius) ** 2, np.float32(np.inf)))
    parts: list[tuple[IdArray, IdArray, FloatArray]] = []
    # Queries in blocks: what one range search returns (every hit, the same person's faces and
    # each face itself included) stays bounded; only the hits kept pile up.
    for start in range(0, count, QUERY_BLOCK):
        lims, distances, rows = index.range_search(vectors[start : start + QUERY_BLOCK], squared)
        bounds: IdArray = np.asarray(lims, dtype=np.int64)
        query = start + np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), np.diff(bounds))
        rows = rows.astype(np.int64)
        keep = labels[query] != labels[rows]  # drops each face itself and its own label's others
        if exact:  # an exact search finds each face pair from both sides: keep one
            keep &= query < rows
        query, rows = query[keep], rows[keep]
        # Oriented from the smaller label to the larger.
        swap = labels[query] > labels[rows]
        parts.append((np.where(swap, rows, query), np.where(swap, query, rows), distances[keep]))
    row_a = np.concatenate([p[0] for p in parts])
    row_b = np.concatenate([p[1] for p in parts])
    distances = np.concatenate([p[2] for p in parts]).astype(np.float32)
    if not exact:  # an IVF search may find a face pair from both sides, or from one only
        _, first = np.unique(row_a * count + row_b, return_index=True)
        row_a, row_b, distances = row_a[first], row_b[first], distances[first]
    if not len(row_a):
        return _empty()
    label_a, label_b = labels[row_a], labels[row_b]
    # Group per label pair, nearest face pair first within each group.
    order = np.lexsort((distances, label_b, label_a))
    label_a, label_b, row_a, row_b, distances = (
        label_a[order], label_b[order], row_a[order], row_b[order], distances[order])
    starts = np.flatnonzero(np.r_[True, (label_a[1:] != label_a[:-1]) | (label_b[1:] != label_b[:-1])])
    sizes = np.diff(np.r_[starts, len(label_a)]).astype(np.int64)
    nearest = np.sqrt(np.maximum(distances[starts], 0.0)).astype(np.float32)
    # Nearest pair first; equal distances in label order, so the answer is the same every time.
    ranked = np.lexsort((label_b[starts], label_a[starts], nearest))
    pick = starts[ranked]
    return LabelPairs(label_a=label_a[pick], label_b=label_b[pick], row_a=row_a[pick], row_b=row_b[pick],
                      distance=nearest[ranked], count=sizes[ranked])
