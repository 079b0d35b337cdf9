"""Gallery vector index: FAISS search ranked per person, filtered per gallery, updated in place.

Exact (a flat L2 index) up to ``exact_max`` faces; above that an IVF index (inverted lists over
k-means cells) whose ``nprobe`` trades recall for speed. IVF rather than HNSW because IVF builds a
million vectors in seconds where HNSW takes minutes on a small CPU, and removes a vector by id
at once (HNSW only marks it deleted).

An index is built as a snapshot from arrays, then kept current by writes applied in place
(``GalleryIndex.upsert_faces`` and the rest: milliseconds at a million faces), until it asks for a
fresh build (``rebuild_reason``), which the caller makes in the background while this one answers.

- vectors.py: the vectors by slot in FAISS (flat or IVF) or on an accelerator;
- galleries.py: memberships and each gallery's slots, the search's filter;
- negatives.py: "this face is not X";
- gallery.py: GalleryIndex, which ties them together under one lock.
"""

from face_engine.index.gallery import GalleryIndex
from face_engine.index.vectors import DEFAULT_EXACT_MAX, DEFAULT_NPROBE, build_faiss_index, cells_suit, ivf_cells

__all__ = ["DEFAULT_EXACT_MAX", "DEFAULT_NPROBE", "GalleryIndex", "build_faiss_index", "cells_suit", "ivf_cells"]
