"""GPU benchmark, for a machine with CUDA: every figure the GPU targets ask for, in one run.

    python -m face_engine.bench.gpu [DIR ...] [--frames 1024] [--reference-workers 16]

1. Embeddings/s in fp32, TF32 and fp16 (through the service's path, numpy chips in and out, and
   the network alone on chips already on the GPU), with each precision's drift from dlib.
2. The CNN detector on 720p frames, pyramid built on the GPU, fp32 and fp16: images/s, and
   rectangles against dlib's own CNN detector and between precisions.
3. End to end on 720p JPEGs (each photo under DIR resized to cover 1280×720 and centre-cropped):
   images/s of the fast pipeline per configuration against the dlib reference (HOG upsample 1,
   5-point landmarks, dlib ResNet) on every core, and identities compared with the reference.
4. Exact search of 1M faces as one matrix product on the GPU: queries/s and agreement with numpy.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from face_engine.bench.pipeline import DEFAULT_DATA, REFERENCE, name_faces, photos_under, run_reference_parallel
from face_engine.bench.search import synthetic_gallery
from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings
from face_engine.types import DetectorKind, Device, ImageFaces, Precision, Runtime

FRAME = (1280, 720)
PRECISIONS = (Precision.FP32, Precision.TF32, Precision.FP16)


def frame_720p(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    scale = max(FRAME[0] / image.width, FRAME[1] / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    left, top = (image.width - FRAME[0]) // 2, (image.height - FRAME[1]) // 2
    out = io.BytesIO()
    image.crop((left, top, left + FRAME[0], top + FRAME[1])).save(out, "JPEG", quality=90)
    return out.getvalue()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn: Callable[[], object], items: int, seconds: float = 3.0) -> float:
    """Items per second of ``fn`` (which handles ``items``), after two warm-up calls."""
    fn()
    fn()
    _sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls == 0:
        fn()
        calls += 1
    _sync()
    return calls * items / (time.perf_counter() - start)


def embeddings(chips: list[np.ndarray], reference: np.ndarray, batch: int, data_dir: str, device: str) -> None:
    from face_engine.sessions.torch_session import TorchResNetSession

    print(f"\n== 1. embeddings: {len(chips)} real chips, batch {batch} ==")
    print(f"{'precision':<9} {'service faces/s':>15} {'network faces/s':>15} {'max |Δ| to dlib':>15} "
          f"{'max L2 Δ':>9}")
    big = (chips * (batch // len(chips) + 1))[:batch]
    staged = torch.from_numpy(np.stack(big)).to(device)
    for precision in PRECISIONS if device == "cuda" else (Precision.FP32,):
        session = TorchResNetSession(data_dir=data_dir, device=device, precision=precision, threads=0)
        got = np.stack(session.embed(chips))
        diff = got - reference
        service = rate(partial(session.embed, big), batch)
        network = rate(partial(session.embed_tensor, staged), batch)
        print(f"{precision.value:<9} {service:>15,.0f} {network:>15,.0f} {np.abs(diff).max():>15.2e} "
              f"{np.linalg.norm(diff, axis=1).max():>9.2e}", flush=True)


def detector(frames: list[np.ndarray], batch: int, data_dir: str, dlib_frames: int, device: str) -> None:
    import dlib

    from face_engine.sessions.onnx_session import dlib_rect_to_box
    from face_engine.sessions.torch_session import TorchMmodSession
    from face_engine.weights import MMOD_DETECTOR, weight_path

    print(f"\n== 2. CNN detector: {len(frames)} 720p frames, batch {batch}, pyramid on the GPU ==")
    found = {}
    work = (frames * (batch // len(frames) + 1))[:batch]
    for precision in (Precision.FP32, Precision.FP16) if device == "cuda" else (Precision.FP32, Precision.FP32):
        session = TorchMmodSession(data_dir=data_dir, device=device, precision=precision, threads=0,
                                   max_batch_size=batch)
        found[precision] = session.detect_many(frames, 0)
        speed = rate(partial(session.detect_many, work, 0), batch, seconds=5.0)
        print(f"{precision.value}: {speed:,.0f} images/s, {sum(map(len, found[precision]))} faces", flush=True)
    same = sum([d.box for d in a] == [d.box for d in b]
               for a, b in zip(found[Precision.FP32], found.get(Precision.FP16, found[Precision.FP32]), strict=True))
    print(f"fp16 rectangles equal to fp32 on {same}/{len(frames)} frames")
    cnn = dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))
    equal, worst = 0, 0.0
    for frame, ours in zip(frames[:dlib_frames], found[Precision.FP32], strict=False):
        ref = [(dlib_rect_to_box(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
               for d in cnn(frame, 0)]
        equal += [d.box for d in ours] == [b for b, _ in ref]
        if len(ours) == len(ref):
            worst = max([worst, *(abs(d.score - s) for d, (_, s) in zip(ours, ref, strict=True))])
    print(f"fp32 rectangles identical to dlib's CNN detector on {equal}/{dlib_frames} frames, "
          f"max score difference {worst:.2e}", flush=True)


def end_to_end(blobs: list[bytes], unique: int, batch: int, workers: int, train: Path, data_dir: str,
               reference_images: int, device: Device) -> None:
    print(f"\n== 3. end to end: {len(blobs)} 720p JPEGs ({unique} distinct), batches of {batch}, "
          f"{workers} CPU workers ==")
    ref = run_reference_parallel(blobs[: max(reference_images, unique)], workers)
    print(f"dlib reference on {workers} processes: {ref.images / ref.wall_s:,.1f} images/s "
          f"({ref.images} images, {ref.wall_s:.1f} s)", flush=True)
    ref_names = name_faces(FacePipeline(REFERENCE), train, ref.results[:unique], 0.6)
    base = EngineSettings(runtime=Runtime.TORCH, device=device, data_dir=data_dir, workers=workers,
                          max_batch_size=batch, min_face_size=80)
    configs = {
        "cnn fp32": replace(base, detector=DetectorKind.CNN),
        "hog+cnn fp32 (the CPU default)": base,
    }
    if device is Device.CUDA:
        configs |= {
            "cnn fp16 detector, fp32 embeddings": replace(base, detector=DetectorKind.CNN,
                                                          detector_precision=Precision.FP16),
            "cnn fp16": replace(base, detector=DetectorKind.CNN, precision=Precision.FP16,
                                detector_precision=Precision.FP16),
        }
    print(f"{'configuration':<36} {'images/s':>9} {'vs dlib':>8} {'decode':>7} {'detect':>7} {'landm.':>7} "
          f"{'embed':>7} (ms per image)  identities")
    for name, settings in configs.items():
        pipeline = FacePipeline(settings)
        pipeline.analyze_bytes(blobs[:batch])  # warm-up: conversion, cuDNN algorithm choice
        start = time.perf_counter()
        results = [r for i in range(0, len(blobs), batch) for r in pipeline.analyze_bytes(blobs[i : i + batch])]
        speed = len(blobs) / (time.perf_counter() - start)
        good = [r for r in results if isinstance(r, ImageFaces)]
        stages = [sum(r.timings_ms[s] for r in good) / len(good) for s in ("decode", "detect", "landmarks", "embed")]
        names = name_faces(pipeline, train, good[:unique], 0.6)
        same = sum(a == b for a, b in zip(names, ref_names, strict=True))
        print(f"{name:<36} {speed:>9,.0f} {speed / (ref.images / ref.wall_s):>7.0f}× "
              + " ".join(f"{v:>7.2f}" for v in stages) + f"  {same}/{unique} frames as dlib", flush=True)
        for frame, (a, b) in enumerate(zip(names, ref_names, strict=True)):
            if a != b:
                print(f"    frame {frame}: {a} vs dlib {b}")


def search(size: int, queries: int, device: str) -> None:
    from face_engine.sessions.torch_session import TorchExactSearch

    print(f"\n== 4. exact search on the GPU: {size:,} faces, {queries:,} queries ==")
    centres, vectors, _ = synthetic_gallery(size)
    rng = np.random.default_rng(1)
    probe = (centres[rng.choice(len(centres), size=queries)]
             + rng.normal(scale=0.03, size=(queries, vectors.shape[1]))).astype(np.float32)
    start = time.perf_counter()
    index = TorchExactSearch(vectors, device)
    _sync()
    build = time.perf_counter() - start
    _, top = index.search(probe, 1)
    speed = rate(lambda: index.search(probe, 1), queries)
    check = 200
    want = np.array([np.argmin(((vectors - q) ** 2).sum(axis=1)) for q in probe[:check]])
    single = []
    for q in probe[:check]:
        start = time.perf_counter()
        index.search(q[None, :], 1)
        single.append(time.perf_counter() - start)
    print(f"upload {build:.2f} s; batched {speed:,.0f} queries/s; one query p50 "
          f"{np.percentile(single, 50) * 1000:.3f} ms; top-1 equal to numpy on "
          f"{int((top[:check, 0] == want).sum())}/{check}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path, help="photo folders (default tests/data)")
    parser.add_argument("--frames", type=int, default=1024, help="720p JPEGs for the end-to-end run")
    parser.add_argument("--batch", type=int, default=64, help="images per pipeline call")
    parser.add_argument("--embed-batch", type=int, default=1024)
    parser.add_argument("--detect-batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference-images", type=int, default=96)
    parser.add_argument("--dlib-frames", type=int, default=3, help="frames checked against dlib's CNN")
    parser.add_argument("--search-size", type=int, default=1_000_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["embed", "detect", "e2e", "search"])
    parser.add_argument("--cpu", action="store_true", help="a quick check of this script without a GPU")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a GPU machine (--cpu checks the script)")
    data_dir = os.environ.get("FACE_ENGINE_DATA_DIR", "")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU only"
    print(f"{name}, torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)

    paths = photos_under(args.dirs or [DEFAULT_DATA])
    unique = [frame_720p(p) for p in paths]
    blobs = (unique * (args.frames // len(unique) + 1))[: args.frames]
    reference = FacePipeline(replace(REFERENCE, workers=args.workers))
    if "embed" not in args.skip:
        faces = [f for r in reference.analyze_bytes(unique) if isinstance(r, ImageFaces) for f in r.faces]
        ref = np.stack(reference.embedder.predict([f.chip for f in faces]))
        embeddings([f.chip for f in faces], ref, args.embed_batch, data_dir, device)
    frames = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in unique]
    if "detect" not in args.skip:
        detector(frames, args.detect_batch, data_dir, args.dlib_frames, device)
    if "e2e" not in args.skip:
        train = DEFAULT_DATA / "people" / "train"
        end_to_end(blobs, len(unique), args.batch, args.workers, train, data_dir, args.reference_images,
                   Device(device))
    if "search" not in args.skip:
        search(args.search_size, 10_000, device)


if __name__ == "__main__":
    main()
