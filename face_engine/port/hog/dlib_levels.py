"""dlib's HOG detector with its pyramid levels scanned in parallel: the same output, on all cores.

``dlib.get_frontal_face_detector().run`` scans the pyramid levels one after another on one core.
The scan of a level does not depend on the others until non-maximum suppression, so this driver
runs dlib's own scan on each level in a pool of threads (dlib releases the GIL) and does the NMS
itself, with the port's exact code:

* level images: ``dlib.pyramid_down(6)`` (and ``dlib.resize_image`` to (2H+1)×(2W+2) for each
  upsampling), the very resizes dlib's ``run`` makes, bit for bit;
* per level: a detector saved from the installed dlib's filters (:func:`serialize_hog_detector`)
  with ``max_pyramid_levels = 1`` (scan the given image only) and NMS switched off (thresholds
  1.0: nothing overlaps by more than all of itself), so every window ≥ threshold comes back,
  in that level's integer coordinates;
* boxes mapped up by the level (p·1.2 + 0.3 per level, rounded once, as dlib does), all
  detectors' windows sorted and suppressed together, then mapped down through the upsampling.

Not a re-implementation: the features and filters are dlib's C++ (the fastest CPU code here).
The levels are balanced over the threads by pixel count (level 0 is ~30 % of the work).
"""

from __future__ import annotations

import queue
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from face_engine.port.hog.model import HogModel, serialize_hog_detector
from face_engine.port.hog.pyramid import as_detector_image, level_sizes, rect_up6
from face_engine.port.hog.scan import HogDetection, map_down, nms

__all__ = ["DlibLevelsDetector"]


class DlibLevelsDetector:
    """``detect(image, upsample, adjust_threshold)`` equal to dlib's ``run``, levels in parallel."""

    def __init__(self, model: HogModel | None = None, threads: int = 2) -> None:
        import dlib

        if model is None:
            from face_engine.port.hog.model import load_frontal_face_model

            model = load_frontal_face_model()
        self.model = model
        self._dlib = dlib
        self._down = dlib.pyramid_down(6)
        self.threads = max(1, threads)
        # dlib's detectors keep scratch buffers: each call takes one from the pool and returns it.
        self._detectors: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with tempfile.TemporaryDirectory(prefix="facerec-hog-") as tmp:
            path = Path(tmp) / "one_level.svm"
            path.write_bytes(serialize_hog_detector(model, max_pyramid_levels=1, nms=(1.0, 1.0)))
            for _ in range(self.threads + 1):
                self._detectors.put(dlib.fhog_object_detector(str(path)))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hog-level")

    def _scan_one_level(self, image: np.ndarray, adjust: float) -> list[tuple[tuple[int, int, int, int], float, int]]:
        detector = self._detectors.get()
        try:
            rects, scores, indices = detector.run(image, 0, adjust)
        finally:
            self._detectors.put(detector)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s), int(i))
                for r, s, i in zip(rects, scores, indices, strict=True)]

    def levels(self, image: np.ndarray) -> list[np.ndarray]:
        sc = self.model.scanner
        sizes = level_sizes(image.shape[0], image.shape[1], sc.min_layer, sc.max_pyramid_levels)
        out = [image]
        for _ in sizes[1:]:
            out.append(np.asarray(self._down(out[-1])))
        return out

    def detect(self, image: np.ndarray, upsample: int = 0, adjust_threshold: float = 0.0) -> list[HogDetection]:
        if upsample < 0:
            raise ValueError("upsample must be ≥ 0")
        img = as_detector_image(image)
        if img.shape[0] == 0 or img.shape[1] == 0:
            return []
        for _ in range(upsample):
            img = np.asarray(self._dlib.resize_image(img, 2 * img.shape[0] + 1, 2 * img.shape[1] + 2))
        sc = self.model.scanner
        sizes = level_sizes(img.shape[0], img.shape[1], sc.min_layer, sc.max_pyramid_levels)
        # Longest first onto the least-loaded thread, by pixels.
        loads = [0] * self.threads
        groups: list[list[int]] = [[] for _ in range(self.threads)]
        for lvl in sorted(range(len(sizes)), key=lambda i: -sizes[i][0] * sizes[i][1]):
            t = loads.index(min(loads))
            groups[t].append(lvl)
            loads[t] += sizes[lvl][0] * sizes[lvl][1]
        # The scans start at once; this thread makes the smaller levels meanwhile.
        levels: list[Future[np.ndarray]] = [Future() for _ in sizes]
        levels[0].set_result(img)

        def work(group: Sequence[int]) -> list[tuple[tuple[int, int, int, int], HogDetection]]:
            out = []
            for lvl in group:
                for rect, score, d in self._scan_one_level(levels[lvl].result(), adjust_threshold):
                    r = rect_up6(rect, lvl)
                    out.append(((d, lvl, rect[1], rect[0]), HogDetection(*r, score, d)))
            return out

        parts = [self._pool.submit(work, g) for g in groups if g]
        try:
            for lvl in range(1, len(sizes)):
                levels[lvl].set_result(np.asarray(self._down(levels[lvl - 1].result())))
        except BaseException as exc:  # never leave a scan waiting for a level that will not come
            for pending in levels:
                if not pending.done():
                    pending.set_exception(exc)
            raise
        cands = [c for part in parts for c in part.result()]
        # dlib's scan order (detector, level, row, column) for equal scores, then its NMS
        found = nms([det for _, det in sorted(cands, key=lambda item: item[0])], self.model.nms_iou,
                    self.model.nms_covered)
        return map_down(found, upsample)

    def detect_batch(self, images: Sequence[np.ndarray], upsample: int = 0,
                     adjust_threshold: float = 0.0) -> list[list[HogDetection]]:
        return [self.detect(im, upsample, adjust_threshold) for im in images]

    __call__ = detect
