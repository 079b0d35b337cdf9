"""Where a full snapshot of the index comes from: the apps that own faces register their readers
here when Django starts (people: faces and memberships; corrections: negatives), so that core
never imports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from face_engine.types import EMBEDDING_DIM

IdArray = npt.NDArray[np.int64]


@dataclass
class FacesSnapshot:
    face_ids: IdArray
    person_ids: IdArray
    embeddings: npt.NDArray[np.float32]
    memberships: dict[int, list[int]]  # person id -> gallery ids


@dataclass
class NegativesSnapshot:
    negative_ids: IdArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    person_ids: IdArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    embeddings: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, EMBEDDING_DIM), dtype=np.float32))


@dataclass
class _Sources:
    model_id: Callable[[], str] | None = None
    faces: Callable[[str], FacesSnapshot] | None = None
    negatives: Callable[[str], NegativesSnapshot] | None = None


sources = _Sources()


def register_faces(*, model_id: Callable[[], str], faces: Callable[[str], FacesSnapshot]) -> None:
    """``model_id()``: the embedding model this process encodes with (changes of other models are
    removals here); ``faces(model)``: every encoded face of that model and every membership."""
    sources.model_id, sources.faces = model_id, faces


def register_negatives(negatives: Callable[[str], NegativesSnapshot]) -> None:
    sources.negatives = negatives


def current_model_id() -> str:
    if sources.model_id is None:
        raise RuntimeError("no face source registered (the people app registers one in its ready())")
    return sources.model_id()


def read_snapshot(model: str) -> tuple[FacesSnapshot, NegativesSnapshot]:
    if sources.faces is None:
        raise RuntimeError("no face source registered (the people app registers one in its ready())")
    negatives = sources.negatives(model) if sources.negatives is not None else NegativesSnapshot()
    return sources.faces(model), negatives
