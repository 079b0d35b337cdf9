"""One 720p photo at a time: the latency a client sees for a single image (issue 14: ≤ 100 ms on the
2-core CPU), the fast pipeline against the dlib reference on the same JPEGs.

Each photo is fitted inside 1280×720 (scaled to fit, centred on grey, JPEG quality 90), so its faces
stay whole, unlike the GPU benchmark's frames, which are cropped to cover. Each image is analysed
alone (`analyze_bytes([jpeg])`: decode, detect, landmarks, embed), ``repeat`` times for the fast
pipeline (its median counts) and once for the reference.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from face_engine.pipeline import FacePipeline
from face_engine.types import ImageError, ImageFaces

FRAME = (1280, 720)


def frame_fit_720p(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    scale = min(FRAME[0] / image.width, FRAME[1] / image.height)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", FRAME, (128, 128, 128))
    canvas.paste(image, ((FRAME[0] - image.width) // 2, (FRAME[1] - image.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def single_image_ms(pipeline: FacePipeline, blob: bytes, repeat: int) -> tuple[float, ImageFaces | ImageError]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = pipeline.analyze_bytes([blob])[0]
        times.append((time.perf_counter() - start) * 1000)
    assert result is not None
    return float(np.median(times)), result


def _summary(ms: list[float]) -> str:
    p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {max(ms):7.1f} ms"


def print_single_720p(fast: FacePipeline, reference: FacePipeline, paths: list[Path], train: Path,
                      repeat: int = 3) -> None:
    from face_engine.bench.pipeline import print_identities

    blobs = [frame_fit_720p(p) for p in paths]
    for pipeline in (fast, reference):
        pipeline.analyze_bytes(blobs[:1])  # warm-up
    fast_ms, fast_results = zip(*(single_image_ms(fast, b, repeat) for b in blobs), strict=True)
    ref_ms, ref_results = zip(*(single_image_ms(reference, b, 1) for b in blobs), strict=True)
    print(f"\nsingle 720p images ({len(blobs)} photos fitted into 1280×720, one per call; target ≤ 100 ms):")
    print(f"  fast       {_summary(list(fast_ms))}")
    print(f"  reference  {_summary(list(ref_ms))}")
    print(f"  speed-up at p50: {np.median(ref_ms) / np.median(fast_ms):.1f}×")
    print_identities(fast, reference, fast_results, ref_results, paths, train, heading="  identities:")
    for ms, path, result in sorted(zip(fast_ms, paths, fast_results, strict=True), key=lambda x: -x[0]):
        if ms > 100:
            faces = len(result.faces) if isinstance(result, ImageFaces) else result.code
            print(f"  over 100 ms: {path.name} {ms:.0f} ms (faces: {faces})")
