"""Pair accuracy on the LFW development pairs (../shared/lfw-dev): same person when d ≤ threshold.

A pair whose image has no detected face counts as "different" (nothing can be claimed as a
match without a face), so detector misses cost accuracy, as they would in service.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face_engine.types import Embedding, RGBImage

EmbedFn = Callable[[Sequence[RGBImage]], list[Embedding | None]]


@dataclass(frozen=True)
class LfwResult:
    pairs: int
    accuracy: float
    best_threshold: float
    best_accuracy: float
    images: int
    images_without_face: int


def read_pairs(root: Path) -> list[tuple[str, str, bool]]:
    with (root / "pairs.tsv").open() as handle:
        return [(row["file_x"], row["file_y"], row["same"] == "1")
                for row in csv.DictReader(handle, delimiter="\t")]


def pair_accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((distances <= threshold) == same))


def evaluate(root: Path, embed: EmbedFn, *, threshold: float = 0.6, batch: int = 64,
             load: Callable[[Path], RGBImage] | None = None) -> LfwResult:
    from PIL import Image

    def default_load(path: Path) -> RGBImage:
        return np.asarray(Image.open(path).convert("RGB"))

    load = load or default_load
    pairs = read_pairs(root)
    names = sorted({name for x, y, _ in pairs for name in (x, y)})
    embeddings: dict[str, Embedding | None] = {}
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        for name, vector in zip(chunk, embed([load(root / "images" / n) for n in chunk]), strict=True):
            embeddings[name] = vector
    return score(pairs, embeddings, embeddings, threshold=threshold)


Embeddings = dict[str, Embedding | None]
GRID = np.round(np.arange(0.30, 0.80, 0.005), 3)  # thresholds searched for the best accuracy


def score(pairs: Sequence[tuple[str, str, bool]], left: Embeddings, right: Embeddings,
          *, threshold: float = 0.6) -> LfwResult:
    """Pair accuracy with the first image of each pair embedded by ``left``, the second by
    ``right`` (the same dict when both sides are treated alike)."""
    distances = np.array([
        np.inf if (a := left[x]) is None or (b := right[y]) is None else float(np.linalg.norm(a - b))
        for x, y, _ in pairs
    ])
    same = np.array([s for _, _, s in pairs])
    accuracies = [pair_accuracy(distances, same, t) for t in GRID]
    best = int(np.argmax(accuracies))
    return LfwResult(
        pairs=len(pairs), accuracy=pair_accuracy(distances, same, threshold),
        best_threshold=float(GRID[best]), best_accuracy=float(accuracies[best]),
        images=len(left), images_without_face=sum(v is None for v in left.values()),
    )
