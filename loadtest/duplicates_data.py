"""Embeddings for the duplicate-pairs benchmark (loadtest/duplicates.py): real ones, and synthetic
people drawn from a model fitted on the real ones. No Django here.

Real: every LFW development image (../shared/lfw-dev/images, 2,132 identities) and the project's
photos (tests/data/people/train), embedded by the service's engine as enrolment embeds them
(largest face, ``enrol_embedding``), cached per model id in var/bench/ (3.5 minutes on two busy
cores the first time).

Synthetic: a gallery of 10,000 people needs more identities than LFW has. A face embedding is
modelled as identity + within-person variation, both Gaussian, fitted on the real embeddings:
- within-person covariance W: deviations of each image from its identity's mean, over identities
  with two or more images (scaled by n/(n-1), unbiased);
- identity centres ~ N(μ, B) with B = Cov(one image per identity) − W (negative eigenvalues
  clipped): one image per identity carries B + W.
A synthetic person is a centre drawn from N(μ, B) and faces centre + N(0, W); a second face for an
LFW identity with one image is that image + N(0, 2W) (the difference of two faces is 2W). The fit is
checked against the real data: the benchmark prints the distance quantiles of same-person and
different-person pairs, real beside synthetic.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LFW = ROOT.parent / "shared" / "lfw-dev" / "images"
PROJECT = ROOT / "tests" / "data" / "people" / "train"
CACHE = ROOT / "var" / "bench"


def identity_of(path: Path) -> str:
    """LFW files are <Name>_<NNNN>.jpg; the project's are <name>/<photo>."""
    if path.parent.parent == PROJECT:
        return f"project:{path.parent.name}"
    return re.sub(r"_\d{4}$", "", path.stem)


def real_photos() -> list[Path]:
    lfw = sorted(LFW.glob("*.jpg")) if LFW.is_dir() else []
    project = sorted(p for p in PROJECT.glob("*/*") if p.is_file())
    return lfw + project


def cache_key(path: Path) -> str:
    return f"project/{path.parent.name}/{path.name}" if path.parent.parent == PROJECT else f"lfw/{path.name}"


def embed_photos(paths: list[Path], pipeline, *, batch: int = 64) -> dict[str, np.ndarray]:
    """{cache key: enrolment embedding}, photos without a face left out."""
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        for path, result in zip(chunk, pipeline.analyze_bytes([p.read_bytes() for p in chunk]), strict=True):
            faces = getattr(result, "faces", ())
            # An empty array marks "no face", so the cache knows the photo was tried.
            out[cache_key(path)] = (np.asarray(pipeline.enrol_embedding(faces[0]), np.float32) if faces
                                    else np.zeros(0, np.float32))
    return out


def real_embeddings(pipeline) -> tuple[dict[str, list[np.ndarray]], float]:
    """{identity: [embeddings]} of every real photo, the cached ones (per model id and enrolment
    jitters) read back and only new photos embedded; and the seconds spent embedding."""
    import time

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", pipeline.model_id)
    cache = CACHE / f"real-embeddings-{safe}-j{pipeline.settings.enrol_jitters}.npz"
    paths = real_photos()
    vectors: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as stored:
            vectors = {name: stored[name] for name in stored.files}
    missing = [p for p in paths if cache_key(p) not in vectors]
    started = time.perf_counter()
    if missing:
        vectors.update(embed_photos(missing, pipeline))
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **vectors)
    seconds = time.perf_counter() - started if missing else 0.0
    people: dict[str, list[np.ndarray]] = defaultdict(list)
    for path in paths:
        vector = vectors[cache_key(path)]
        if vector.size:
            people[identity_of(path)].append(vector)
    return dict(people), seconds


@dataclass(frozen=True)
class FaceModel:
    mean: np.ndarray
    between: np.ndarray  # Cholesky-like factor of B: centre = mean + z @ between
    within: np.ndarray  # factor of W

    def centres(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return (self.mean + rng.standard_normal((count, len(self.mean))) @ self.between).astype(np.float32)

    def noise(self, rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
        z = rng.standard_normal((*shape, len(self.mean)))
        return (scale * (z @ self.within)).astype(np.float32)


def _factor(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).T  # z @ factor has covariance cov


def fit(people: dict[str, list[np.ndarray]]) -> FaceModel:
    deviations, weights, firsts = [], [], []
    for vectors in people.values():
        stack = np.stack(vectors).astype(np.float64)
        firsts.append(stack[0])
        if len(stack) >= 2:
            deviations.append((stack - stack.mean(axis=0)) * np.sqrt(len(stack) / (len(stack) - 1)))
            weights.append(len(stack))
    dev = np.concatenate(deviations)
    within = dev.T @ dev / len(dev)
    singles = np.stack(firsts)
    between = np.cov(singles, rowvar=False) - within
    return FaceModel(mean=singles.mean(axis=0), between=_factor(between), within=_factor(within))


Quantiles = tuple[np.ndarray, np.ndarray, float, float]


def distance_quantiles(people: list[np.ndarray], rng: np.random.Generator, *, samples: int = 20000,
                       qs: tuple[float, ...] = (0.001, 0.01, 0.05, 0.5, 0.95)) -> Quantiles:
    """(same-person quantiles, different-person quantiles, share of different-person pairs within
    0.6, within 0.5) over ``people`` (each a (faces, 128) array)."""
    multi = [p for p in people if len(p) >= 2]
    same = np.array([np.linalg.norm(p[0] - p[1]) for p in multi])
    a = rng.integers(0, len(people), samples)
    b = rng.integers(0, len(people), samples)
    keep = a != b
    diff = np.array([np.linalg.norm(people[i][0] - people[j][0]) for i, j in zip(a[keep], b[keep], strict=True)])
    return (np.quantile(same, qs), np.quantile(diff, qs), float(np.mean(diff <= 0.6)), float(np.mean(diff <= 0.5)))
