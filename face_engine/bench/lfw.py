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
    distances = np.array([
        np.inf if embeddings[x] is None or embeddings[y] is None
        else float(np.linalg.norm(embeddings[x] - embeddings[y]))  # type: ignore[operator]
        for x, y, _ in pairs
    ])
    same = np.array([s for _, _, s in pairs])
    grid = np.round(np.arange(0.30, 0.80, 0.005), 3)
    scores = [pair_accuracy(distances, same, t) for t in grid]
    best = int(np.argmax(scores))
    return LfwResult(
        pairs=len(pairs), accuracy=pair_accuracy(distances, same, threshold),
        best_threshold=float(grid[best]), best_accuracy=float(scores[best]),
        images=len(names), images_without_face=sum(v is None for v in embeddings.values()),
    )
