"""What corrections tell the face index (core.index): negatives added or removed, and the negatives
of a full snapshot."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.index.log import Change, Kind, index_log_append
from core.index.sources import NegativesSnapshot
from corrections.models import NegativeFace
from people.models import embedding_matrix


def index_negatives_changed(negative_ids: Iterable[int]) -> None:
    """These negatives as they stand now, inside the writing transaction: present ones enter the
    index, gone ones leave it."""
    ids = sorted(set(negative_ids))
    if not ids:
        return
    rows = {pk: (person, blob, model) for pk, person, blob, model in NegativeFace.objects.filter(
        pk__in=ids).values_list("id", "person_id", "embedding", "model")}
    index_log_append([
        Change(kind=Kind.NEGATIVE, item_id=pk, person_id=rows[pk][0], embedding=bytes(rows[pk][1]),
               model=rows[pk][2])
        if pk in rows else Change(kind=Kind.NEGATIVE_REMOVED, item_id=pk)
        for pk in ids
    ])


def negatives_snapshot(model: str) -> NegativesSnapshot:
    """The negative faces ("not X") of ``model``: a query closer to one of X's than to X's own faces
    is not named X."""
    ids, people, blobs = [], [], []
    rows = NegativeFace.objects.filter(model=model).values_list("id", "person_id", "embedding")
    for pk, person_id, blob in rows.iterator(chunk_size=5000):
        ids.append(pk)
        people.append(person_id)
        blobs.append(blob)
    return NegativesSnapshot(np.asarray(ids, dtype=np.int64), np.asarray(people, dtype=np.int64),
                             embedding_matrix(blobs))
