"""The engine's batch throughput, the yardstick of the load test's recognition throughput.

    DJANGO_SETTINGS_MODULE=config.settings.production ... python -m loadtest.engine PHOTO... [--seconds 8]

Run by loadtest/run.py in a process of its own, with the server's environment and before the server
starts (nothing competes for the cores): the probe photos go through the pipeline the server uses
(people.engine, the production engine settings) in batches of --batch images (at most
FACE_ENGINE_MAX_BATCH_SIZE; the photos repeated to fill them), after an untimed warm-up,
until --seconds have passed (at least one batch). Prints one JSON line: images/s, batch size,
batches, faces per batch, the engine's runtime and device.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path


def measure(photos: list[Path], seconds: float, batch: int | None) -> dict:
    import django

    django.setup(set_prefix=False)
    from face_engine.runtime import resolve
    from face_engine.types import ImageFaces
    from people.engine import pipeline

    engine = pipeline()
    engine.load()
    size = min(batch, engine.settings.max_batch_size) if batch else engine.settings.max_batch_size
    blobs = [p.read_bytes() for p in photos]
    images = list(itertools.islice(itertools.cycle(blobs), size))
    runtime, device = resolve(engine.settings)
    warm = engine.analyze_bytes(blobs)  # lazy allocations, graph optimisation: not timed
    bad = [p.name for p, r in zip(photos, warm, strict=True) if not isinstance(r, ImageFaces) or not r.faces]
    if device != "cpu":  # a GPU tunes its kernels per shape: the batch's own shapes first
        engine.analyze_bytes(images)
    batches = faces = 0
    start = time.perf_counter()
    while batches < 1 or time.perf_counter() - start < seconds:
        results = engine.analyze_bytes(images)
        faces += sum(len(r.faces) for r in results if isinstance(r, ImageFaces))
        batches += 1
    elapsed = time.perf_counter() - start
    return {"images_per_second": round(batches * size / elapsed, 2), "batch": size, "batches": batches,
            "seconds": round(elapsed, 2), "faces_per_batch": faces // batches, "no_faces": bad,
            "runtime": runtime.value, "device": device, "threads": engine.settings.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=0,
                        help="images per batch, at most FACE_ENGINE_MAX_BATCH_SIZE (0: that size)")
    args = parser.parse_args()
    print(json.dumps(measure(args.photos, args.seconds, args.batch or None)), flush=True)


if __name__ == "__main__":
    main()
