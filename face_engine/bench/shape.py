"""The ported 5-point shape predictor and face chip against dlib, on the same faces, in one run.

    python -m face_engine.bench.shape [--lfw 200] [--device cpu|cuda] [--threads 1] [--repeat 3]

Faces: dlib's HOG detector (upsample 1) on the first ``--lfw`` images of ``../shared/lfw-dev``
(250×250, small faces) and on the photos of tests/data/people/test (large faces, several per
photo: their chips go through the pyramid). Reported, in ms per face with the ratio to dlib:

* landmarks: dlib's ``shape_predictor`` called face by face; the numpy port face by face and
  batched (every face in one call); the torch port batched on ``--device`` (images already there);
* chips: ``dlib.get_face_chip`` face by face; the numpy port face by face; torch batched;

and whether the points and chips are identical to dlib's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
LFW = ROOT.parent / "shared" / "lfw-dev" / "images"
PEOPLE = ROOT / "tests" / "data" / "people" / "test"


def _best_ms(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: first calls allocate (and on CUDA pick kernels)
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def _faces(lfw: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    import dlib
    from PIL import Image

    paths = sorted(LFW.glob("*.jpg"))[:lfw] + sorted(PEOPLE.glob("*.jpg"))  # no LFW copy: the photos alone
    hog = dlib.get_frontal_face_detector()
    images: list[np.ndarray] = []
    rects: list[tuple[int, int, int, int]] = []
    index: list[int] = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        found = [(r.left(), r.top(), r.right(), r.bottom()) for r in hog(image, 1)]
        if found:
            index += [len(images)] * len(found)
            rects += found
            images.append(image)
    return images, np.asarray(rects, np.int64), np.asarray(index, np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=int, default=200, help="LFW images to take faces from")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    # dlib and numpy run on one core; torch on the CPU gets one thread too by default (on a busy
    # shared machine two threads made it 4× slower, waiting on each other).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import dlib
    import torch

    from face_engine.port.chip import get_face_chip
    from face_engine.port.chip_torch import TorchChipExtractor, plan_chip
    from face_engine.port.shape import ShapePredictor
    from face_engine.port.shape_format import load_shape_predictor
    from face_engine.port.shape_torch import ImageBatch, TorchShapePredictor
    from face_engine.weights import LANDMARKS_5, weight_path

    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    images, rects, index = _faces(args.lfw)
    n = len(rects)
    print(f"{n} faces in {len(images)} images (HOG, upsample 1; found in {time.perf_counter() - start:.1f} s); "
          f"torch on {device}, {args.threads} CPU threads")

    start = time.perf_counter()
    model = load_shape_predictor()
    print(f"parsing {LANDMARKS_5}: {time.perf_counter() - start:.2f} s")
    sp = dlib.shape_predictor(str(weight_path(LANDMARKS_5)))
    port, port_torch = ShapePredictor(model), TorchShapePredictor(model, device)
    on_device = ImageBatch(images, device)
    pairs = list(zip(rects.tolist(), index.tolist(), strict=True))

    shapes: list[object] = []

    def run_dlib() -> None:
        shapes[:] = [sp(images[i], dlib.rectangle(*r)) for r, i in pairs]

    def one_by_one() -> None:
        for r, i in pairs:
            port.predict(images[i], r)

    def batched() -> None:
        port.predict_batch(images, rects, index)

    def batched_torch() -> None:
        port_torch.predict(on_device, rects, index)

    ms = {
        "dlib, face by face": _best_ms(run_dlib, args.repeat, sync),
        "numpy, face by face": _best_ms(one_by_one, args.repeat, sync),
        "numpy, batched": _best_ms(batched, args.repeat, sync),
        f"torch {device.type}, batched": _best_ms(batched_torch, args.repeat, sync),
    }
    reference = np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], np.int64)  # type: ignore[attr-defined]
    points = port.predict_batch(images, rects, index)
    points_torch = port_torch.predict(on_device, rects, index).cpu().numpy()
    _table("landmarks (ms per face, ratio to dlib):", ms, n)
    print(f"  points equal to dlib's: numpy {_equal(points, reference)}/{n}, "
          f"torch {_equal(points_torch, reference)}/{n}")

    levels = np.bincount([plan_chip(p, *images[i].shape[:2]).levels for p, i in zip(reference, index, strict=True)])
    extractor = TorchChipExtractor(device)
    chips: list[np.ndarray] = []

    def dlib_chips() -> None:
        chips[:] = [np.asarray(dlib.get_face_chip(images[i], s, 150, 0.25)) for s, i in zip(shapes, index, strict=True)]

    def numpy_chips() -> None:
        for p, i in zip(reference, index, strict=True):
            get_face_chip(images[i], p)

    def torch_chips() -> None:
        extractor.chips(on_device, reference, index)

    ms = {
        "dlib.get_face_chip": _best_ms(dlib_chips, args.repeat, sync),
        "numpy, face by face": _best_ms(numpy_chips, args.repeat, sync),
        f"torch {device.type}, batched": _best_ms(torch_chips, args.repeat, sync),
    }
    ours = np.stack([get_face_chip(images[i], p) for p, i in zip(reference, index, strict=True)])
    ours_torch = extractor.chips(on_device, reference, index).cpu().numpy()
    theirs = np.stack(chips)
    _table(f"chips (ms per face, ratio to dlib; faces per pyramid level {dict(enumerate(levels.tolist()))}):", ms, n)
    print(f"  chips identical to dlib's: numpy {_equal(ours, theirs)}/{n}, torch {_equal(ours_torch, theirs)}/{n} "
          f"(differing pixels: {int((ours_torch != theirs).sum())})")


def _table(title: str, ms: dict[str, float], n: int) -> None:
    print(title)
    first = next(iter(ms.values()))
    for name, value in ms.items():
        print(f"  {name:24s} {value / n:8.3f}   ×{first / value:5.2f}")


def _equal(a: np.ndarray, b: np.ndarray) -> int:
    """How many faces (first axis) are identical in both."""
    return int((a == b).reshape(len(a), -1).all(axis=1).sum())


if __name__ == "__main__":
    main()
