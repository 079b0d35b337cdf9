"""Compression benchmark: what product quantization (IVF-PQ) and scalar quantization (IVF-SQ8) save
against the service's IVF-Flat index, and what they cost in recall and distance accuracy.

    python -m face_engine.bench.compression [--faces 1000000] [--queries 1000]
        [--refine 4] [--wide-refine 16] [--wide-nprobe 64] [--pq 16 32 64] [--no-sq8]

The synthetic gallery and queries of face_engine.bench.search (five faces around each person, queries
new faces of enrolled people). Every index shares the reference's cells (the IVF-Flat k-means, 1.5√n
cells, trained once on a sample as the service does) and is filled as the service fills its own:
slots as ids, with a hashtable direct map so that a face can be removed in place.

Rows, one query at a time:
- IVF-Flat, nprobe 32: the service's index today, the reference;
- IVF-PQ with m 8-bit sub-quantizers (m bytes a vector against the 512 of a float32 embedding), with
  and without re-ranking the top ``--refine``×k candidates by their exact distance (IndexRefine over
  a flat copy of the vectors: that copy is 512 bytes a face again, so the refine saves RAM only if
  those vectors are memory-mapped from disk), then with ``--wide-refine``×k candidates, then with
  ``--refine`` at ``--wide-nprobe`` (whether the cells or the codes lose the top face);
- IVF-SQ8: 8 bits a dimension, 128 bytes a vector.

Columns: code bytes a vector (+512 for the refine's vectors); the index's size as FAISS serializes it
(codes, ids, direct map), and the process's RSS growth while it was built (also FAISS's search
tables, e.g. IVF-PQ's precomputed nlist×m×256 floats); train and add time (the shared k-means is in
IVF-Flat's train only); search p50/p99 of one query; face@1: the approximate top face is the exact
one; person@1: it is a face of the exact top face's person (what recognition needs); then the
reported distance of the top face against the exact top distance (L2, the unit of the 0.6 match
threshold): the share of queries off by more than 0.01, the largest error, and the share whose
match at 0.6 flips.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from face_engine.bench.search import SPREAD, synthetic_gallery
from face_engine.index.vectors import DEFAULT_NPROBE, HASHTABLE, build_faiss_index
from face_engine.types import EMBEDDING_BYTES, EMBEDDING_DIM

MATCH_THRESHOLD = 0.6  # face_engine.settings.EngineSettings.match_threshold
DISTANCE_TOLERANCE = 0.01
Floats = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


def rss_mib() -> float:
    # Freed training buffers go back to the system first, or they would count as the index's.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Built:
    name: str
    index: Any  # a faiss.IndexIVF
    code_bytes: int
    serialized_mib: float
    rss_mib: float
    train_s: float
    add_s: float


@dataclass
class Truth:
    """Exact search's answer: the top face's row, person and L2 distance per query."""
    rows: Ids
    persons: Ids
    distances: Floats


@contextmanager
def _blas_distances() -> Iterator[None]:
    """FAISS's BLAS distances for a codebook's k-means. faiss 1.15 computes distances for fewer than
    ``distance_compute_blas_threshold`` (128,000) queries without BLAS, which for 2–4 dimensions (a
    PQ sub-vector) ran 15–35 s for m = 32 and 64 at 100k faces instead of 1–4 s."""
    previous = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 20
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = previous


def _train_on(index: Any, sample: Floats) -> Callable[[], None]:
    def train() -> None:
        with _blas_distances():
            index.train(sample)
    return train


def fill(name: str, index: Any, vectors: Floats, train: Callable[[], None], before: float,
         train_s: float = 0.0) -> Built:
    start = time.perf_counter()
    train()
    train_s += time.perf_counter() - start
    index.set_direct_map_type(HASHTABLE)
    start = time.perf_counter()
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    add_s = time.perf_counter() - start
    index.parallel_mode = 1  # as the service: threads split the probed cells of one query
    rss = rss_mib() - before
    serialized = len(faiss.serialize_index(index)) / 2**20
    return Built(name, index, int(index.code_size), serialized, rss, train_s, add_s)


def build_all(vectors: Floats, nprobe: int, pq_ms: list[int], sq8: bool) -> list[Built]:
    """IVF-Flat as the service builds it, then the compressed indexes on a copy of its cells."""
    before = rss_mib()
    start = time.perf_counter()
    reference = cast(faiss.IndexIVF, build_faiss_index(vectors, exact_max=0, nprobe=nprobe))
    kmeans_s = time.perf_counter() - start
    built = [fill("IVF-Flat", reference, vectors, lambda: None, before, kmeans_s)]
    nlist = int(reference.nlist)
    rng = np.random.default_rng(0)
    # The k-means's sample size (39 a cell), and at least 39 for each of a sub-quantizer's 256 centroids.
    size = min(len(vectors), max(nlist, 256) * 39)
    sample = vectors[rng.choice(len(vectors), size=size, replace=False)]
    for m in pq_ms:
        before = rss_mib()
        # A trained quantizer holding nlist centroids: the IVF skips the k-means and keeps these cells.
        pq = faiss.IndexIVFPQ(faiss.clone_index(reference.quantizer), EMBEDDING_DIM, nlist, m, 8)
        built.append(fill(f"IVF-PQ m={m}", pq, vectors, _train_on(pq, sample), before))
    if sq8:
        before = rss_mib()
        sq = faiss.IndexIVFScalarQuantizer(faiss.clone_index(reference.quantizer), EMBEDDING_DIM, nlist,
                                            faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2, True)
        built.append(fill("IVF-SQ8", sq, vectors, _train_on(sq, sample), before))
    return built


def measure(index: Any, probe: Floats, truth: Truth, person_ids: Ids) -> dict[str, float]:
    latencies = []
    rows = np.empty(len(probe), dtype=np.int64)
    squared = np.empty(len(probe), dtype=np.float32)
    for i, row in enumerate(probe):
        start = time.perf_counter()
        d, ids = index.search(row[None, :], 1)
        latencies.append(time.perf_counter() - start)
        rows[i], squared[i] = ids[0, 0], d[0, 0]
    found = rows >= 0
    persons = np.where(found, person_ids[np.maximum(rows, 0)], -1)
    distances = np.where(found, np.sqrt(np.maximum(squared, 0.0)), np.inf)
    error = np.abs(distances - truth.distances)
    flips = (distances < MATCH_THRESHOLD) != (truth.distances < MATCH_THRESHOLD)
    return {
        "p50": float(np.percentile(latencies, 50) * 1000), "p99": float(np.percentile(latencies, 99) * 1000),
        "face": float(np.mean(rows == truth.rows)), "person": float(np.mean(persons == truth.persons)),
        "moved": float(np.mean(error > DISTANCE_TOLERANCE)), "max": float(np.max(error)),
        "flips": float(np.mean(flips)),
    }


HEADER = (f"{'index':<13} {'nprobe':>6} {'refine':>6} {'B/vec':>7} {'size MiB':>8} {'RSS MiB':>8} "
          f"{'train s':>7} {'add s':>6} {'p50 ms':>7} {'p99 ms':>7} {'face@1':>7} {'person@1':>8} "
          f"{'Δd>.01':>7} {'max Δd':>7} {'flip@.6':>7}")


def row(b: Built, nprobe: int, refine: int, flat_mib: tuple[float, float], r: dict[str, float]) -> str:
    extra = (0.0, 0.0) if not refine else flat_mib
    code = f"{b.code_bytes}" + (f"+{EMBEDDING_BYTES}" if refine else "")
    return (f"{b.name:<13} {nprobe:>6} {refine or '-':>6} {code:>7} {b.serialized_mib + extra[0]:>8.0f} "
            f"{b.rss_mib + extra[1]:>8.0f} {b.train_s:>7.2f} {b.add_s:>6.2f} {r['p50']:>7.3f} {r['p99']:>7.3f} "
            f"{r['face']:>7.4f} {r['person']:>8.4f} {r['moved']:>7.4f} {r['max']:>7.4f} {r['flips']:>7.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=DEFAULT_NPROBE)
    parser.add_argument("--wide-nprobe", type=int, default=64, help="a larger nprobe for IVF-PQ with the refine")
    parser.add_argument("--refine", type=int, default=4, help="re-rank this many times k candidates exactly")
    parser.add_argument("--wide-refine", type=int, default=16, help="a larger refine factor for IVF-PQ")
    parser.add_argument("--pq", type=int, nargs="+", default=[16, 32, 64], help="IVF-PQ sub-quantizers")
    parser.add_argument("--no-sq8", action="store_true")
    args = parser.parse_args(argv)

    print(f"{args.faces:,} faces, {args.queries:,} queries, {faiss.omp_get_max_threads()} FAISS threads, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    centres, vectors, person_ids = synthetic_gallery(args.faces)
    rng = np.random.default_rng(1)
    picks = rng.choice(len(centres), size=args.queries)
    probe = (centres[picks] + rng.normal(scale=SPREAD, size=(args.queries, EMBEDDING_DIM))).astype(np.float32)

    # The exact index is both the ground truth and the refine's store of full vectors.
    before = rss_mib()
    exact = faiss.IndexFlatL2(EMBEDDING_DIM)
    exact.add(vectors)
    flat_mib = (len(faiss.serialize_index(exact)) / 2**20, rss_mib() - before)
    start = time.perf_counter()
    squared, rows = exact.search(probe, 1)
    exact_s = time.perf_counter() - start
    truth = Truth(rows[:, 0], person_ids[rows[:, 0]], np.sqrt(np.maximum(squared[:, 0], 0.0)))
    print(f"exact search of the {args.queries:,} queries in one batch: {exact_s:.2f} s; "
          f"exact top distance median {np.median(truth.distances):.3f}, max {truth.distances.max():.3f}",
          flush=True)

    print(HEADER, flush=True)
    for b in build_all(vectors, args.nprobe, args.pq, not args.no_sq8):
        b.index.nprobe = args.nprobe
        print(row(b, args.nprobe, 0, flat_mib, measure(b.index, probe, truth, person_ids)), flush=True)
        if b.name.startswith("IVF-PQ"):
            refined = faiss.IndexRefine(b.index, exact)
            for nprobe, factor in ((args.nprobe, args.refine), (args.nprobe, args.wide_refine),
                                   (args.wide_nprobe, args.refine)):
                b.index.nprobe, refined.k_factor = nprobe, float(factor)
                print(row(b, nprobe, factor, flat_mib, measure(refined, probe, truth, person_ids)), flush=True)
            del refined
        b.index = None  # one compressed index in memory at a time
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
