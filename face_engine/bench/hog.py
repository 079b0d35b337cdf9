"""dlib's HOG face detector against its port: ``python -m face_engine.bench.hog``.

One run, the same images for every runtime: per image and upsampling, the time of dlib
(``get_frontal_face_detector().run``), of the exact numpy reference and of the torch detector, the
ratios to dlib, and whether the rectangles (and scores) are identical; ``dlib-lv`` is dlib's own
scan with the pyramid levels spread over the threads (:mod:`face_engine.port.hog.dlib_levels`).
Then a batch of same-size images (``detect_batch`` against dlib one by one). ``--lfw N`` adds a check on N images of
``../shared/lfw-dev`` (0: none, −1: all), counting identical and differing detections and printing
every differing case with both scores. The default run takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
LFW = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"
PHOTOS = ("misc/obama-240p.jpg", "misc/obama-480p.jpg", "misc/obama-720p.jpg", "misc/obama-1080p.jpg",
          "people/test/obama_and_biden.jpg")
UPSAMPLED = ("misc/obama-240p.jpg", "misc/obama-480p.jpg")  # upsample 1: 4× the pixels
# At the service's detection size: a 720p photo resized to 2048×1152 (FACE_MIN_SIZE 40, capped by
# FACE_DETECTION_MAX_SIDE 2048), what one /recognize of a 720p photo scans.
AT_DETECTION_SIZE = ("misc/obama-720p.jpg",)
Found = list[tuple[Any, ...]]


def _best_s(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def dlib_found(detector: Any, image: np.ndarray, upsample: int, adjust: float = 0.0) -> Found:
    rects, scores, indices = detector.run(image, upsample, adjust)
    return [(r.left(), r.top(), r.right(), r.bottom(), float(s), int(i))
            for r, s, i in zip(rects, scores, indices, strict=True)]


def compare(ours: Sequence[Sequence[Any]], theirs: Found) -> tuple[bool, float]:
    """(same rectangles and detector indices, max |score difference| over them)."""
    same = [tuple(d[:4]) + (d[5],) for d in ours] == [t[:4] + (t[5],) for t in theirs]
    diff = max((abs(float(d[4]) - t[4]) for d, t in zip(ours, theirs, strict=False)), default=0.0)
    return same, diff


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def photos(args: argparse.Namespace, dlib_hog: Any, runtimes: dict[str, Any]) -> None:
    print(f"per image ({args.threads} threads; best of {args.repeat}; ms; ×: dlib time / runtime time)")
    header = f"  {'image':34s} {'up':>2s} {'dlib':>8s}"
    for name in runtimes:
        header += f" {name:>8s} {'×':>6s}"
    print(header + "  identical")
    cases = [(p, 0, False) for p in PHOTOS] + [(p, 1, False) for p in UPSAMPLED]
    cases += [(p, 0, True) for p in AT_DETECTION_SIZE]
    for photo, upsample, to_detection_size in cases:
        image = _load(DATA / photo)
        if to_detection_size:
            from face_engine.models.detector import resize

            image = resize(image, 2048 / max(image.shape[:2]))
        theirs = dlib_found(dlib_hog, image, upsample)
        dlib_s = _best_s(functools.partial(dlib_hog.run, image, upsample, 0.0), args.repeat)
        label = f"{Path(photo).name} {image.shape[1]}x{image.shape[0]}"
        line = f"  {label:34s} {upsample:2d} {dlib_s * 1e3:8.1f}"
        verdicts = []
        for name, det in runtimes.items():
            if name == "numpy" and image.shape[0] * image.shape[1] * 4**upsample > args.numpy_max_pixels:
                line += f" {'-':>8s} {'':>6s}"
                continue
            ours = det.detect(image, upsample)
            seconds = _best_s(functools.partial(det.detect, image, upsample), args.repeat)
            same, diff = compare(ours, theirs)
            verdicts.append(f"{name}:{'yes' if same else 'NO'}(Δ{diff:.1g})")
            line += f" {seconds * 1e3:8.1f} {dlib_s / seconds:6.2f}"
        print(line + "  " + " ".join(verdicts) + f"  [{len(theirs)} face(s)]")


def batch(args: argparse.Namespace, dlib_hog: Any, runtimes: dict[str, Any]) -> None:
    base = _load(DATA / "misc" / "obama-480p.jpg")
    rng = np.random.default_rng(0)
    # same size, different content: flips and small brightness shifts of one photo
    images = [np.ascontiguousarray(np.clip(base[:, ::(-1) ** i].astype(int) + int(rng.integers(-20, 20)), 0, 255)
                                   .astype(np.uint8)) for i in range(args.batch)]
    theirs = [dlib_found(dlib_hog, im, 0) for im in images]
    dlib_s = _best_s(lambda: [dlib_hog.run(im, 0, 0.0) for im in images], args.repeat)
    print(f"batch of {len(images)} images {base.shape[1]}x{base.shape[0]}, upsample 0 (ms per image):")
    print(f"  dlib one by one  {dlib_s / len(images) * 1e3:8.1f}")
    for name in ("torch", "dlib-lv"):
        det = runtimes[name]
        found = det.detect_batch(images, 0)
        seconds = _best_s(functools.partial(det.detect_batch, images, 0), args.repeat)
        same = all(compare(f, t)[0] for f, t in zip(found, theirs, strict=True))
        print(f"  {name:8s} batch   {seconds / len(images) * 1e3:8.1f}   ×{dlib_s / seconds:5.2f}   identical: {same}")


def lfw_check(args: argparse.Namespace, dlib_hog: Any, runtimes: dict[str, Any]) -> None:
    names = sorted(p.name for p in (LFW / "images").glob("*.jpg"))
    if args.lfw > 0:
        names = names[:: max(1, len(names) // args.lfw)][: args.lfw]
    det = runtimes.get(args.lfw_runtime)
    if det is None:
        raise SystemExit(f"--lfw-runtime {args.lfw_runtime} is not loaded")
    for upsample in args.lfw_upsample:
        counts = {"images": 0, "identical": 0, "differing": 0, "faces": 0}
        max_diff = 0.0
        start = time.perf_counter()
        for name in names:
            image = _load(LFW / "images" / name)
            theirs = dlib_found(dlib_hog, image, upsample)
            ours = [tuple(d) for d in det.detect(image, upsample)]
            same, diff = compare(ours, theirs)
            counts["images"] += 1
            counts["faces"] += len(theirs)
            if same:
                counts["identical"] += 1
                max_diff = max(max_diff, diff)
            else:
                counts["differing"] += 1
                print(f"  DIFFERS {name} up{upsample}: dlib {theirs}  {args.lfw_runtime} {ours}")
        took = time.perf_counter() - start
        print(f"LFW {args.lfw_runtime} vs dlib, upsample {upsample}: {counts}, max score difference on identical "
              f"images {max_diff:.3g} ({took:.0f} s)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-numpy", action="store_true", help="skip the (slow) numpy reference")
    parser.add_argument("--numpy-max-pixels", type=int, default=2_100_000,
                        help="time the numpy reference only up to this many (upsampled) pixels")
    parser.add_argument("--lfw", type=int, default=0, help="LFW images to check (-1: all)")
    parser.add_argument("--lfw-runtime", default="torch", choices=("torch", "numpy", "dlib-lv"))
    parser.add_argument("--lfw-upsample", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--lfw-only", action="store_true", help="skip the photos and the batch")
    args = parser.parse_args(argv)

    import dlib
    import torch

    from face_engine.port.hog.dlib_levels import DlibLevelsDetector
    from face_engine.port.hog.model import load_frontal_face_model
    from face_engine.port.hog.scan import NumpyHogDetector
    from face_engine.port.hog.torch_hog import TorchHogDetector

    torch.set_num_threads(args.threads)
    model = load_frontal_face_model()
    dlib_hog = dlib.get_frontal_face_detector()
    runtimes: dict[str, Any] = {}
    if not args.no_numpy:
        runtimes["numpy"] = NumpyHogDetector(model)
    runtimes["torch"] = TorchHogDetector(model, device=args.device)
    runtimes["dlib-lv"] = DlibLevelsDetector(model, threads=args.threads)
    if not args.lfw_only:
        photos(args, dlib_hog, runtimes)
        if args.batch:
            batch(args, dlib_hog, runtimes)
    if args.lfw:
        lfw_check(args, dlib_hog, runtimes)


if __name__ == "__main__":
    main()
