"""Timings of the port against dlib on this machine: ``python -m face_engine.port.bench``.

Reports ms per face for the recognition network (batch of 32 chips: torch CPU, ONNX Runtime CPU,
dlib's batched ``compute_face_descriptor``), ms per chip extraction, and ms per 640-px image
for the CNN detector. Needs dlib, torch and onnxruntime; writes its conversion cache to a
temporary folder unless ``--data-dir`` is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


def _best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    import dlib
    import torch
    from PIL import Image

    from face_engine.port import convert
    from face_engine.port.chip import get_face_chip
    from face_engine.weights import LANDMARKS_5, MMOD_DETECTOR, RESNET, weight_path

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="facerec-bench-"))
    photo = np.asarray(Image.open(DATA / "people" / "test" / "obama_and_biden.jpg").convert("RGB"))

    # Recognition: 32 chips from real faces (repeated to fill the batch).
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weight_path(LANDMARKS_5)))
    shapes = [predictor(photo, r) for r in hog(photo, 1)]
    landmarks = [np.array([(p.x, p.y) for p in s.parts()], float) for s in shapes]
    chips = np.stack([get_face_chip(photo, pts) for pts in landmarks])
    batch = np.ascontiguousarray(np.resize(chips, (32, 150, 150, 3)))
    facerec = dlib.face_recognition_model_v1(str(weight_path(RESNET)))
    resnet = convert.load_resnet(data_dir)
    onnx = convert.OnnxResNet(data_dir, threads=args.threads)
    n = len(batch)
    chip_list = list(batch)
    print(f"recognition, batch of {n} chips, {args.threads} threads (ms per face):")
    print(f"  torch CPU fp32      {_best_ms(lambda: resnet.embed(batch, 32), args.repeat) / n:7.2f}")
    print(f"  ONNX Runtime CPU    {_best_ms(lambda: onnx.embed(batch, 32), args.repeat) / n:7.2f}")
    dlib_ms = _best_ms(lambda: facerec.compute_face_descriptor(chip_list), args.repeat) / n
    print(f"  dlib (list)         {dlib_ms:7.2f}")

    print("chip extraction (ms per face):")
    port_chip_ms = _best_ms(lambda: [get_face_chip(photo, p) for p in landmarks], args.repeat)
    dlib_chip_ms = _best_ms(lambda: [dlib.get_face_chip(photo, s, 150, 0.25) for s in shapes], args.repeat)
    print(f"  port (numpy)        {port_chip_ms / len(landmarks):7.2f}")
    print(f"  dlib.get_face_chip  {dlib_chip_ms / len(shapes):7.2f}")

    # Detection on the same photo downscaled to 640 px on its long side.
    image = Image.fromarray(photo)
    scale = 640 / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    small = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
    det_torch = convert.load_detector(data_dir)
    det_onnx = convert.load_detector(data_dir, backend="onnx")
    cnn = dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))
    data, _ = det_torch.input_tensor(small)
    print(f"CNN detector on {small.shape[1]}×{small.shape[0]} (tensor {data.shape[2]}×{data.shape[1]}), ms per image:")
    print(f"  pyramid (numpy)     {_best_ms(lambda: det_torch.input_tensor(small), args.repeat):7.1f}")
    print(f"  port, torch CPU     {_best_ms(lambda: det_torch.detect(small), args.repeat):7.1f}")
    print(f"  port, ONNX Runtime  {_best_ms(lambda: det_onnx.detect(small), args.repeat):7.1f}")
    print(f"  dlib                {_best_ms(lambda: cnn(small, 0), 1):7.1f}")


if __name__ == "__main__":
    main()
