"""Clustering unknown faces, measured on LFW identities (../shared/lfw-dev, every image).

    python -m face_engine.bench.clustering [--root ../shared/lfw-dev] [--seeds 3]

Each image's largest face is embedded once (plain embedding, as the live pipeline keeps for a
sighting) and cached in var/unknowns-lfw-embeddings.npz (keyed by the model id); its identity is
the file name without the _NNNN.jpg suffix. Then every method clusters the same embeddings:

* ``incremental-average@d``: face_engine.clustering's live rule, a face joins the cluster whose
  members are within d on average, in a shuffled arrival order (``--seeds`` orders, mean shown);
* ``incremental-centroid@d``: the same with the distance to the cluster's centroid;
* ``incremental-member@d``: the same with the distance to the nearest member (single linkage);
* ``chinese-whispers@d``: dlib.chinese_whispers_clustering (batch, edges under d);
* ``dbscan@d/m``: scikit-learn's DBSCAN (eps d, min_samples m; noise faces are singletons);
* ``hdbscan/m``: scikit-learn's HDBSCAN (min_cluster_size m; noise faces are singletons);
* ``average@d``: scipy's hierarchical clustering, average linkage cut at d (batch).

Figures: purity (the share of faces in their cluster's majority identity), identities split
(of those with two faces or more: in more than one cluster) and their mean clusters, clusters
formed (against the true number of identities), mixed clusters (more than one identity) and the
wall time (incremental: the whole arrival sequence, one face at a time).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from face_engine.clustering import cluster_incrementally

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"
CACHE = Path(__file__).resolve().parents[2] / "var" / "unknowns-lfw-embeddings.npz"
BATCH = 64


@dataclass(frozen=True)
class Scores:
    faces: int
    identities: int
    clusters: int
    purity: float
    multi_identities: int  # identities with two faces or more
    split_identities: int  # of those, in more than one cluster
    mean_clusters_per_identity: float  # over identities with two faces or more
    mixed_clusters: int  # clusters holding more than one identity


def identity_of(filename: str) -> str:
    """LFW's ``First_Last_0003.jpg`` → ``First_Last``."""
    stem = filename.rsplit(".", 1)[0]
    name, _, number = stem.rpartition("_")
    return name if number.isdigit() and name else stem


def score(truth: Sequence[str], labels: Sequence[int]) -> Scores:
    """How well ``labels`` (one cluster label a face) recover ``truth`` (one identity a face)."""
    if len(truth) != len(labels):
        raise ValueError("one label per face")
    members: dict[int, Counter[str]] = defaultdict(Counter)
    spread: dict[str, set[int]] = defaultdict(set)
    for identity, label in zip(truth, labels, strict=True):
        members[label][identity] += 1
        spread[identity].add(label)
    sizes = Counter(truth)
    multi = [identity for identity, n in sizes.items() if n >= 2]
    return Scores(
        faces=len(truth), identities=len(sizes), clusters=len(members),
        purity=sum(c.most_common(1)[0][1] for c in members.values()) / len(truth) if truth else 1.0,
        multi_identities=len(multi),
        split_identities=sum(1 for identity in multi if len(spread[identity]) > 1),
        mean_clusters_per_identity=float(np.mean([len(spread[i]) for i in multi])) if multi else 1.0,
        mixed_clusters=sum(1 for c in members.values() if len(c) > 1),
    )


def noise_as_singletons(labels: npt.ArrayLike) -> list[int]:
    """DBSCAN/HDBSCAN's noise (-1) → a cluster of its own each, as the service would keep them."""
    out, fresh = [], int(np.max(labels, initial=-1)) + 1
    for label in np.asarray(labels).tolist():
        if label < 0:
            label, fresh = fresh, fresh + 1
        out.append(int(label))
    return out


# ---- embeddings --------------------------------------------------------------------------------

def embed_all(root: Path, cache: Path = CACHE) -> tuple[list[str], npt.NDArray[np.float32]]:
    """(file names, embeddings) of every image with a face; cached for the model in use."""
    from PIL import Image

    from face_engine.registry import get_pipeline

    pipeline = get_pipeline()
    names = sorted(p.name for p in (root / "images").iterdir() if p.suffix.lower() == ".jpg")
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        if str(stored["model"]) == pipeline.model_id and int(stored["total"]) == len(names):
            return [str(n) for n in stored["names"]], stored["embeddings"].astype(np.float32)
    pipeline.load()
    kept, vectors = [], []
    start = time.perf_counter()
    for first in range(0, len(names), BATCH):
        chunk = names[first : first + BATCH]
        images = [np.asarray(Image.open(root / "images" / n).convert("RGB")) for n in chunk]
        for name, result in zip(chunk, pipeline.analyze(images), strict=True):
            if result.largest is not None:
                kept.append(name)
                vectors.append(result.largest.embedding)
        print(f"  embedded {first + len(chunk)}/{len(names)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    matrix = np.stack(vectors).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(kept), embeddings=matrix, model=np.array(pipeline.model_id),
             total=np.array(len(names)))
    return kept, matrix


# ---- the methods -------------------------------------------------------------------------------

Method = Callable[[npt.NDArray[np.float32], int], list[int]]  # (embeddings, seed) → labels


def incremental(join_distance: float, linkage: str) -> Method:
    def run(x: npt.NDArray[np.float32], seed: int) -> list[int]:
        order = np.random.default_rng(seed).permutation(len(x))
        shuffled = cluster_incrementally(x[order], join_distance=join_distance, linkage=linkage)  # type: ignore[arg-type]
        labels = [0] * len(x)
        for position, face in enumerate(order):
            labels[int(face)] = shuffled[position]
        return labels

    return run


def chinese_whispers(threshold: float) -> Method:
    def run(x: npt.NDArray[np.float32], seed: int) -> list[int]:
        import dlib

        return [int(label) for label in dlib.chinese_whispers_clustering(
            [dlib.vector(row.astype(np.float64).tolist()) for row in x], threshold)]

    return run


def dbscan(eps: float, min_samples: int) -> Method:
    def run(x: npt.NDArray[np.float32], seed: int) -> list[int]:
        from sklearn.cluster import DBSCAN

        return noise_as_singletons(DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x))

    return run


def hdbscan(min_cluster_size: int) -> Method:
    def run(x: npt.NDArray[np.float32], seed: int) -> list[int]:
        from sklearn.cluster import HDBSCAN

        return noise_as_singletons(HDBSCAN(min_cluster_size=min_cluster_size, min_samples=1,
                                           copy=True).fit_predict(x))

    return run


def average(threshold: float) -> Method:
    def run(x: npt.NDArray[np.float32], seed: int) -> list[int]:
        from scipy.cluster.hierarchy import fcluster, linkage

        return [int(v) for v in fcluster(linkage(x, method="average"), t=threshold, criterion="distance")]

    return run


def methods() -> dict[str, tuple[Method, bool]]:
    """name → (method, depends on the arrival order)."""
    table: dict[str, tuple[Method, bool]] = {}
    for d in (0.42, 0.44, 0.46, 0.48, 0.5, 0.55):
        table[f"incremental-average@{d}"] = (incremental(d, "average"), True)
    for d in (0.42, 0.44, 0.46, 0.48, 0.5, 0.55):
        table[f"incremental-centroid@{d}"] = (incremental(d, "centroid"), True)
    for d in (0.42, 0.44, 0.46, 0.48, 0.5):
        table[f"incremental-member@{d}"] = (incremental(d, "member"), True)
    for d in (0.42, 0.45, 0.48, 0.5):
        table[f"chinese-whispers@{d}"] = (chinese_whispers(d), False)
    for d in (0.42, 0.45, 0.48):
        table[f"dbscan@{d}/2"] = (dbscan(d, 2), False)  # min_samples 1 and 2 cluster alike (measured)
    table["hdbscan/2"] = (hdbscan(2), False)
    for d in (0.46, 0.5, 0.55):
        table[f"average@{d}"] = (average(d), False)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seeds", type=int, default=3, help="arrival orders for the incremental methods")
    parser.add_argument("--only", nargs="*", default=None, help="method names (prefixes) to run")
    args = parser.parse_args(argv)
    names, x = embed_all(args.root)
    truth = [identity_of(n) for n in names]
    print(f"LFW dev: {len(names)} faces, {len(set(truth))} identities, "
          f"{sum(1 for n in Counter(truth).values() if n >= 2)} with two faces or more; "
          f"{platform.machine()}, {date.today()}")
    print("| method | purity | identities split | clusters per identity | clusters | mixed clusters | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, (method, ordered) in methods().items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        runs = []
        for seed in range(args.seeds if ordered else 1):
            start = time.perf_counter()
            labels = method(x, seed)
            runs.append((score(truth, labels), time.perf_counter() - start))
        s = [r for r, _ in runs]
        first = s[0]
        print(f"| {name} | {np.mean([r.purity for r in s]):.4f} | "
              f"{np.mean([r.split_identities for r in s]):.1f} / {first.multi_identities} | "
              f"{np.mean([r.mean_clusters_per_identity for r in s]):.2f} | "
              f"{np.mean([r.clusters for r in s]):.0f} (of {first.identities}) | "
              f"{np.mean([r.mixed_clusters for r in s]):.1f} | {np.mean([t for _, t in runs]):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
