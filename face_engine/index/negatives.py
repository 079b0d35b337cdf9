"""Negative faces ("this face is not X", see the corrections app), grouped by person: a query closer
to one of X's negatives than to X's nearest face is not answered with X.

They are few (one per correction) next to the faces, so a change builds a new ``Negatives`` (a copy
of them all, sub-millisecond for thousands) and the index swaps the reference."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from face_engine.index.vectors import IdArray, Vectors, as_vectors
from face_engine.types import Match


def last_of_each(ids: IdArray) -> IdArray:
    """Positions of the last occurrence of each id, in order: within one batch the last write wins."""
    if len(ids) < 2:
        return np.arange(len(ids))
    _, first_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_reversed)


class Negatives:
    """Immutable: rows sorted by person id, one slice per person; ``ids`` name the rows."""

    def __init__(self, ids: IdArray, person_ids: IdArray, embeddings: Vectors) -> None:
        if not (len(ids) == len(person_ids) == len(embeddings)):
            raise ValueError("negative_ids, negative_person_ids and negative_embeddings must have the same length")
        order = np.argsort(person_ids, kind="stable")
        self.ids = ids[order]
        self.person_ids = person_ids[order]
        self.vectors = embeddings[order]
        self.persons, starts = np.unique(self.person_ids, return_index=True)
        self.bounds = np.append(starts, len(order)).astype(np.int64)
        self.count = len(embeddings)

    @classmethod
    def of(cls, ids: Iterable[int] | IdArray | None, person_ids: IdArray, embeddings: Vectors | None) -> Negatives:
        vectors = as_vectors(np.zeros((0,), dtype=np.float32) if embeddings is None else embeddings)
        names = np.arange(len(person_ids), dtype=np.int64) if ids is None else _id_array(ids)
        return cls(names, person_ids, vectors)

    def upserted(self, ids: IdArray, person_ids: IdArray, embeddings: Vectors) -> Negatives:
        if not (len(ids) == len(person_ids) == len(embeddings)):
            raise ValueError("negative_ids, person_ids and embeddings must have the same length")
        last = last_of_each(ids)
        ids, person_ids, embeddings = ids[last], person_ids[last], embeddings[last]
        keep = ~np.isin(self.ids, ids)
        return Negatives(np.concatenate([self.ids[keep], ids]), np.concatenate([self.person_ids[keep], person_ids]),
                         np.concatenate([self.vectors[keep], embeddings]))

    def without(self, keep: npt.NDArray[np.bool_]) -> Negatives:
        return Negatives(self.ids[keep], self.person_ids[keep], self.vectors[keep])

    def screen(self, query: Vectors, matches: list[Match]) -> list[Match]:
        """``matches`` without the people ``query`` is closer to a negative of than to their face."""
        if not matches or not self.count:
            return matches
        people = np.fromiter((m.person_id for m in matches), dtype=np.int64, count=len(matches))
        slots = np.searchsorted(self.persons, people)
        slots[slots >= len(self.persons)] = 0
        has = self.persons[slots] == people
        kept = []
        for match, slot, flagged in zip(matches, slots, has, strict=True):
            if flagged:
                own = self.vectors[self.bounds[slot]:self.bounds[slot + 1]]
                if float(np.min(np.linalg.norm(own - query, axis=1))) < match.distance:
                    continue
            kept.append(match)
        return kept


def _id_array(values: Iterable[int] | IdArray) -> IdArray:
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64)
