"""End-to-end benchmark: the fast pipeline against the dlib reference, same photos, same process.

    python -m face_engine.bench [DIR ...] [--lfw ../shared/lfw-dev | --no-lfw]
    manage.py benchmark [DIR ...]            (the same, through Django's command line)

The reference is what the face_recognition library does: dlib's HOG detector with one upsample
on the full image, the 5-point landmarks, dlib's own ResNet. The fast pipeline is whatever the
environment configures (FACE_* variables; by default ONNX Runtime on the CPU, torch on a GPU).
Identities: people/train under the first DIR (or tests/data) are enrolled with each pipeline,
every face of every photo is named by each, and the names are compared.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from face_engine.pipeline import FacePipeline
from face_engine.runtime import resolve
from face_engine.settings import EngineSettings
from face_engine.types import DetectorKind, Embedding, ImageError, ImageFaces, RGBImage, Runtime

STAGES = ("decode", "detect", "landmarks", "embed")
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
DEFAULT_LFW = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"

REFERENCE = EngineSettings(runtime=Runtime.DLIB, detector=DetectorKind.HOG, min_face_size=40,
                           detection_max_side=1_000_000)  # 2× everywhere: dlib's upsample=1


@dataclass
class Run:
    name: str
    wall_s: float
    images: int
    faces: int
    stage_ms: dict[str, float]
    results: list[ImageFaces | ImageError]


def photos_under(dirs: Sequence[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*") if p.suffix.lower() in SUFFIXES)


def run_pipeline(name: str, pipeline: FacePipeline, blobs: list[bytes], repeat: int) -> Run:
    pipeline.load()
    pipeline.analyze_bytes(blobs[:2])  # warm-up: lazy allocations, ONNX graph optimisation
    results: list[ImageFaces | ImageError] = []
    start = time.perf_counter()
    for _ in range(repeat):
        results = []
        for i in range(0, len(blobs), pipeline.settings.max_batch_size):
            results.extend(pipeline.analyze_bytes(blobs[i : i + pipeline.settings.max_batch_size]))
    wall = (time.perf_counter() - start) / repeat
    good = [r for r in results if isinstance(r, ImageFaces)]
    stage_ms = {s: sum(r.timings_ms.get(s, 0.0) for r in good) for s in STAGES}
    return Run(name, wall, len(blobs), sum(len(r.faces) for r in good), stage_ms, results)


def _reference_chunk(blobs: list[bytes]) -> list[ImageFaces | ImageError]:
    return FacePipeline(REFERENCE).analyze_bytes(blobs)


def run_reference_parallel(blobs: list[bytes], workers: int) -> Run:
    """The dlib reference on ``workers`` processes (dlib runs one image per core)."""
    chunks = [blobs[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_reference_chunk, [c[:1] for c in chunks]))  # load the models everywhere
        start = time.perf_counter()
        parts = list(pool.map(_reference_chunk, chunks))
        wall = time.perf_counter() - start
    results: list[ImageFaces | ImageError] = [None] * len(blobs)  # type: ignore[list-item]
    for offset, part in enumerate(parts):
        results[offset::workers] = part
    good = [r for r in results if isinstance(r, ImageFaces)]
    stage_ms = {s: sum(r.timings_ms.get(s, 0.0) for r in good) / workers for s in STAGES}
    return Run(f"dlib reference ×{workers}", wall, len(blobs), sum(len(r.faces) for r in good),
               stage_ms, results)


def print_speed(fast: Run, ref: Run) -> None:
    print(f"\n{'stage':<10} {'fast ms/img':>11} {'ref ms/img':>11} {'fast ms/face':>12} "
          f"{'ref ms/face':>11} {'speed-up':>9}")
    for stage in (*STAGES, "total"):
        f = fast.wall_s * 1000 if stage == "total" else fast.stage_ms[stage]
        r = ref.wall_s * 1000 if stage == "total" else ref.stage_ms[stage]
        ratio = r / f if f > 0 else float("inf")
        print(f"{stage:<10} {f / fast.images:>11.2f} {r / ref.images:>11.2f} "
              f"{f / max(fast.faces, 1):>12.2f} {r / max(ref.faces, 1):>11.2f} {ratio:>8.1f}×")
    for run in (fast, ref):
        print(f"{run.name:<24} {run.images / run.wall_s:8.2f} images/s {run.faces / run.wall_s:8.2f} "
              f"faces/s ({run.images} images, {run.faces} faces, {run.wall_s:.2f} s)")


def embed_throughput(pipeline: FacePipeline, reference: FacePipeline, results: list[ImageFaces | ImageError],
                     batch: int, repeat: int) -> None:
    chips = [f.chip for r in results if isinstance(r, ImageFaces) for f in r.faces]
    if not chips:
        return
    chips = (chips * (batch // len(chips) + 1))[:batch]
    figures = {}
    for name, p in (("fast", pipeline), ("dlib", reference)):
        p.embedder.predict(chips[:2])
        start = time.perf_counter()
        for _ in range(repeat if name == "fast" else 1):
            p.embedder.predict(chips)
        figures[name] = (time.perf_counter() - start) / (repeat if name == "fast" else 1) / len(chips)
    print(f"\nembedding alone, batch {batch}: fast {figures['fast'] * 1000:.3f} ms/face "
          f"({1 / figures['fast']:,.0f} faces/s), dlib {figures['dlib'] * 1000:.2f} ms/face "
          f"({1 / figures['dlib']:,.1f} faces/s): {figures['dlib'] / figures['fast']:.1f}×")


def name_faces(pipeline: FacePipeline, train: Path, results: Sequence[ImageFaces | ImageError],
               threshold: float) -> list[list[str]]:
    """The sorted names of each result's faces: each person under ``train`` (a folder of photos
    each) enrolled with ``pipeline``, a face named after its nearest enrolled face within
    ``threshold``, else "unknown". A few dozen faces: plain numpy, no index."""
    people = sorted(p for p in train.iterdir() if p.is_dir())
    photos = [(d.name, p) for d in people for p in sorted(d.iterdir()) if p.suffix.lower() in SUFFIXES]
    enrolled = pipeline.analyze_bytes([p.read_bytes() for _, p in photos])
    rows = [(name, r.faces[0].embedding) for (name, _), r in zip(photos, enrolled, strict=True)
            if isinstance(r, ImageFaces) and r.faces]
    gallery = np.stack([e for _, e in rows])
    out: list[list[str]] = []
    for result in results:
        names = []
        for face in result.faces if isinstance(result, ImageFaces) else ():
            d = np.linalg.norm(gallery - face.embedding, axis=1)
            names.append(rows[int(d.argmin())][0] if d.min() <= threshold else "unknown")
        out.append(sorted(names))
    return out


def print_identities(fast_pipeline: FacePipeline, ref_pipeline: FacePipeline,
                     fast: Sequence[ImageFaces | ImageError], ref: Sequence[ImageFaces | ImageError],
                     paths: list[Path], train: Path, heading: str = "\nidentities:") -> None:
    """Whether both pipelines' results (one per path) name the same faces; each difference."""
    threshold = fast_pipeline.settings.match_threshold
    a = name_faces(fast_pipeline, train, fast, threshold)
    b = name_faces(ref_pipeline, train, ref, threshold)
    same = sum(x == y for x, y in zip(a, b, strict=True))
    print(f"{heading} {same}/{len(paths)} photos name the same faces in both pipelines "
          f"({sum(map(len, a))} faces fast, {sum(map(len, b))} reference)")
    for path, x, y in zip(paths, a, b, strict=True):
        if x != y:
            print(f"  differs: {path.name}: fast {x} vs reference {y}")


def print_lfw(root: Path, fast_pipeline: FacePipeline, ref_pipeline: FacePipeline) -> None:
    from face_engine.bench.lfw import evaluate

    for name, pipeline in (("fast", fast_pipeline), ("dlib reference", ref_pipeline)):
        def embed(images: Sequence[RGBImage], p: FacePipeline = pipeline) -> list[Embedding | None]:
            return [r.largest.embedding if r.largest else None for r in p.analyze(images)]

        start = time.perf_counter()
        r = evaluate(root, embed, threshold=pipeline.settings.match_threshold)
        print(f"LFW {name:<15} accuracy {r.accuracy:.4f} at {pipeline.settings.match_threshold} "
              f"(best {r.best_accuracy:.4f} at {r.best_threshold}); {r.images_without_face}/{r.images} "
              f"images without a face; {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path, help="photo folders (default tests/data)")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW pairs folder")
    parser.add_argument("--no-lfw", action="store_true", help="skip the LFW accuracy runs")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes of the fast pipeline")
    parser.add_argument("--reference-workers", type=int, default=1,
                        help="processes for the dlib reference (e.g. every core of a GPU machine)")
    parser.add_argument("--embed-batch", type=int, default=256)
    parser.add_argument("--no-single", action="store_true", help="skip the single-720p-image latency run")
    args = parser.parse_args(argv)

    dirs = args.dirs or [DEFAULT_DATA]
    paths = photos_under(dirs)
    blobs = [p.read_bytes() for p in paths]
    settings = EngineSettings.from_env()
    runtime, device = resolve(settings)
    fast_pipeline = FacePipeline(settings)
    ref_pipeline = FacePipeline(replace(REFERENCE, max_batch_size=settings.max_batch_size))
    print(f"{len(paths)} photos under {', '.join(map(str, dirs))}; {os.cpu_count()} CPU cores")
    print(f"fast: runtime {runtime.value} on {device}, {settings.precision.value}, detector "
          f"{settings.detector.value}, FACE_MIN_SIZE {settings.min_face_size}, "
          f"FACE_DETECTION_MAX_SIDE {settings.detection_max_side}")
    print("reference: dlib HOG upsample 1 on the full image, 5-point landmarks, dlib ResNet")

    fast = run_pipeline(f"fast ({runtime.value}/{device})", fast_pipeline, blobs, args.repeat)
    ref = (run_reference_parallel(blobs, args.reference_workers) if args.reference_workers > 1
           else run_pipeline("dlib reference", ref_pipeline, blobs, 1))
    print_speed(fast, ref)
    embed_throughput(fast_pipeline, ref_pipeline, fast.results, args.embed_batch, max(args.repeat, 3))
    train = next((d / "people" / "train" for d in dirs if (d / "people" / "train").is_dir()),
                 DEFAULT_DATA / "people" / "train")
    print_identities(fast_pipeline, ref_pipeline, fast.results, ref.results, paths, train)
    if not args.no_single:
        from face_engine.bench.latency import print_single_720p

        print_single_720p(fast_pipeline, ref_pipeline, paths, train)
    if not args.no_lfw and (args.lfw / "pairs.tsv").is_file():
        print()
        print_lfw(args.lfw, fast_pipeline, ref_pipeline)
