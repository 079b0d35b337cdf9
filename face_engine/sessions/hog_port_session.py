"""dlib's HOG face detector on the port's runtimes, with ``HogDetectorSession``'s interface.

``detect(image, upsample)`` returns what ``dlib_session.HogDetectorSession.detect`` returns for the
same image: the same boxes and scores (both runtimes below reproduce dlib bit for bit), best
first. Backends:

* ``torch``: :class:`face_engine.port.hog.torch_hog.TorchHogDetector` on ``device`` (CPU or
  CUDA); ``detect_many`` runs images of one size as one batch;
* ``numpy``: :class:`face_engine.port.hog.scan.NumpyHogDetector`, the readable reference;
* ``dlib-levels``: :class:`face_engine.port.hog.dlib_levels.DlibLevelsDetector`, dlib's own
  C++ scan with the pyramid levels spread over ``threads`` threads (the fastest on a CPU).

The detectors hold no per-call state, so one session serves every worker thread; the model (the
installed dlib's filters) is read once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from face_engine.types import BoundingBox, Detection, RGBImage


def _detection(det: Any) -> Detection:
    # dlib rectangles are inclusive; ours are exclusive on the right/bottom.
    return Detection(BoundingBox(top=det.top, right=det.right + 1, bottom=det.bottom + 1, left=det.left),
                     float(det.score))


class HogPortSession:
    def __init__(self, backend: str = "torch", device: str = "cpu", threads: int = 0) -> None:
        from face_engine.port.hog.model import load_frontal_face_model

        model = load_frontal_face_model()
        if backend == "torch":
            import torch

            from face_engine.port.hog.torch_hog import TorchHogDetector

            if threads:
                torch.set_num_threads(threads)
            self._detector: Any = TorchHogDetector(model, device=device)
        elif backend == "numpy":
            from face_engine.port.hog.scan import NumpyHogDetector

            self._detector = NumpyHogDetector(model)
        elif backend == "dlib-levels":
            import os

            from face_engine.port.hog.dlib_levels import DlibLevelsDetector

            self._detector = DlibLevelsDetector(model, threads=threads or os.cpu_count() or 1)
        else:
            raise ValueError(f"unknown HOG backend {backend!r}; use 'torch', 'numpy' or 'dlib-levels'")
        self.backend = backend

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        return [_detection(d) for d in self._detector.detect(image, upsample)]

    def detect_many(self, images: Sequence[RGBImage], upsample: int) -> list[list[Detection]]:
        found = self._detector.detect_batch(list(images), upsample)
        return [[_detection(d) for d in dets] for dets in found]
