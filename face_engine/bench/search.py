"""Search benchmark: build time, query latency and recall@1 of the gallery index.

    python -m face_engine.bench.search [--sizes 100000 1000000] [--queries 1000]

Synthetic galleries shaped like face embeddings (five faces ~0.35 apart around each person,
people ~1.4 apart); queries are new faces of enrolled people. Recall@1 is the fraction of queries
whose approximate top face is the exact search's top face.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from face_engine.settings import EngineSettings
from face_engine.types import EMBEDDING_DIM

FACES_PER_PERSON = 5
SPREAD = 0.03


def synthetic_gallery(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    people = max(1, size // FACES_PER_PERSON)
    centres = rng.normal(size=(people, EMBEDDING_DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, FACES_PER_PERSON, axis=0)[:size]
    vectors += rng.normal(scale=SPREAD, size=vectors.shape).astype(np.float32)
    person_ids = np.repeat(np.arange(people, dtype=np.int64), FACES_PER_PERSON)[:size]
    return centres, vectors, person_ids


def _percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000.0)


def run(size: int, queries: int, nprobe: int) -> dict[str, float]:
    from face_engine.index import GalleryIndex  # faiss, imported only here: the GPU bench reuses this module

    centres, vectors, person_ids = synthetic_gallery(size)
    rng = np.random.default_rng(1)
    picks = rng.choice(len(centres), size=queries)
    probe = (centres[picks] + rng.normal(scale=SPREAD, size=(queries, EMBEDDING_DIM))).astype(np.float32)
    face_ids = np.arange(size, dtype=np.int64)

    start = time.perf_counter()
    exact = GalleryIndex(face_ids, person_ids, vectors, exact_max=size)
    exact_build = time.perf_counter() - start
    start = time.perf_counter()
    want = exact.search(probe, 1)
    exact_batch = time.perf_counter() - start

    start = time.perf_counter()
    ann = GalleryIndex(face_ids, person_ids, vectors, exact_max=0, nprobe=nprobe)
    ann_build = time.perf_counter() - start
    latencies, got = [], []
    for row in probe:
        start = time.perf_counter()
        got.append(ann.search(row[None, :], 1)[0])
        latencies.append(time.perf_counter() - start)
    recall = float(np.mean([g[0].face_id == w[0].face_id for g, w in zip(got, want, strict=True)]))
    start = time.perf_counter()
    ann.search(probe, 1)
    ann_batch = time.perf_counter() - start
    return {
        "size": size, "exact_build_s": exact_build, "exact_batch_qps": queries / exact_batch,
        "ann_build_s": ann_build, "ann_p50_ms": _percentile_ms(latencies, 50),
        "ann_p95_ms": _percentile_ms(latencies, 95), "ann_recall_at_1": recall,
        "ann_batch_qps": queries / ann_batch,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=EngineSettings.index_nprobe)
    args = parser.parse_args(argv)
    print(f"{'faces':>9} {'exact build':>11} {'exact q/s':>10} {'ANN build':>10} {'ANN p50':>9} "
          f"{'ANN p95':>9} {'recall@1':>9} {'ANN q/s':>9}")
    for size in args.sizes:
        r = run(size, args.queries, args.nprobe)
        print(f"{size:>9,} {r['exact_build_s']:>10.2f}s {r['exact_batch_qps']:>10,.0f} "
              f"{r['ann_build_s']:>9.2f}s {r['ann_p50_ms']:>7.3f}ms {r['ann_p95_ms']:>7.3f}ms "
              f"{r['ann_recall_at_1']:>9.4f} {r['ann_batch_qps']:>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
