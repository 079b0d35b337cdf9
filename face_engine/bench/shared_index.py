"""What holding the index once per machine saves: N processes each with a private copy of the index
against N processes mapping one snapshot file (face_engine/index/shared.py), same vectors, same
searches, in the same run.

    python -m face_engine.bench.shared_index [--faces 1000000] [--processes 4] [--seconds 10]

A snapshot of ``--faces`` random embeddings (IVF above 100k) is written once; then, for each mode,
``--processes`` processes open it (``private``: FAISS reads it into each process's memory, what every
process held before; ``shared``: memory-mapped), touch every vector once (a long-running server's
steady state), search single queries for ``--seconds``, and report their memory while all are
alive: RSS, and PSS (shared pages divided among the processes mapping them: the PSS of all
processes adds up to what the machine really spends). Search latency is printed for both modes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_engine.index import GalleryIndex
from face_engine.index.shared import VECTORS, open_snapshot, write_snapshot
from face_engine.types import EMBEDDING_DIM


def _memory_kib() -> dict[str, int]:
    found = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        if name in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean", "Private_Dirty"):
            found[name] = int(value.split()[0])
    return found


def child(folder: Path, mapped: bool, seconds: float) -> None:
    start = time.perf_counter()
    index = open_snapshot(folder, nprobe=32, mapped=mapped)
    opened = time.perf_counter() - start
    rng = np.random.default_rng()
    store = index._store  # noqa: SLF001 - a benchmark looks inside
    if store.nlist:  # every cell once: every vector's page read, as after hours of serving
        store._base.nprobe = store.nlist  # noqa: SLF001
        index.search(rng.normal(size=(1, EMBEDDING_DIM)).astype(np.float32) * 0.05, 5)
        store._base.nprobe = 32  # noqa: SLF001
    else:
        index.search(rng.normal(size=(1, EMBEDDING_DIM)).astype(np.float32) * 0.05, 5)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        query = rng.normal(size=(1, EMBEDDING_DIM)).astype(np.float32) * 0.05
        t = time.perf_counter()
        index.search(query, 5)
        latencies.append(time.perf_counter() - t)
    ms = np.asarray(latencies) * 1000
    print(json.dumps({"open_s": opened, "searches": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                      "p99_ms": float(np.percentile(ms, 99)), **_memory_kib()}), flush=True)
    sys.stdin.readline()  # alive until the parent has every process's figures


def run_mode(folder: Path, mapped: bool, processes: int, seconds: float) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "face_engine.bench.shared_index", "--child", str(folder),
            "--seconds", str(seconds)] + (["--mapped"] if mapped else [])
    children = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]
    try:
        return [json.loads(c.stdout.readline()) for c in children]  # type: ignore[union-attr]
    finally:
        for c in children:
            c.communicate("\n", timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mapped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mapped, args.seconds)
        return 0
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.faces, EMBEDDING_DIM)).astype(np.float32)
    vectors *= 0.6 / np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(args.faces, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="facerec-shared-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        index = GalleryIndex(ids, ids // 3, vectors)
        built = time.perf_counter() - start
        start = time.perf_counter()
        write_snapshot(folder, index, {})
        written = time.perf_counter() - start
        del index, vectors
        size_mib = (folder / VECTORS).stat().st_size / 2**20
        print(f"{args.faces} faces: built in {built:.1f} s, snapshot written in {written:.1f} s "
              f"({size_mib:.0f} MiB of vectors); {args.processes} processes per mode")
        totals = {}
        for mode, mapped in (("private", False), ("shared", True)):
            figures = run_mode(folder, mapped, args.processes, args.seconds)
            pss = sum(f["Pss"] for f in figures) / 1024
            totals[mode] = pss
            print(f"{mode:8} PSS of all {pss:8.0f} MiB | per process RSS "
                  f"{np.mean([f['Rss'] for f in figures]) / 1024:6.0f} MiB, PSS "
                  f"{np.mean([f['Pss'] for f in figures]) / 1024:6.0f} MiB | open "
                  f"{np.mean([f['open_s'] for f in figures]):.2f} s | search p50 "
                  f"{np.median([f['p50_ms'] for f in figures]):.2f} ms p99 "
                  f"{np.median([f['p99_ms'] for f in figures]):.2f} ms", flush=True)
        print(f"shared / private memory: {totals['shared'] / totals['private']:.2f} "
              f"(saves {totals['private'] - totals['shared']:.0f} MiB with {args.processes} processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
