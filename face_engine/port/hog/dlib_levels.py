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
Every scan goes into one queue in level order; the pool's threads, and the caller once it has built
the pyramid, take the next one as they free up. Level 0 is ~30 % of the work: where that is more
than a thread's share (more than 3 threads), a level is cut into row bands that overlap by the rows
a window's features reach (:data:`BAND_OVERLAP`), with the same windows and scores.
"""

from __future__ import annotations

import math
import queue
import tempfile
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from face_engine.port.hog.model import HogModel, serialize_hog_detector
from face_engine.port.hog.pyramid import as_detector_image, level_sizes, rect_up6
from face_engine.port.hog.scan import HogDetection, map_down, nms

__all__ = ["BAND_OVERLAP", "Band", "DlibLevelsDetector"]

CELL = 8  # fHOG cell: a band starts on the level's cell grid, so its cells are the level's cells
# Rows a band reads beyond those it owns. A window's score depends on the pixels of its 80×80
# box, the filters' padding cell and the fHOG's gradient, interpolation and normalisation
# neighbours: measured, every window owned by a band scores as in the whole level from 88 rows
# on (tests/data photos, every cut on the cell grid); one cell more is kept.
BAND_OVERLAP = 96
_FAR = 1 << 30


class Band(NamedTuple):
    """Rows [start, stop) of pyramid level ``level`` to scan, keeping the windows whose top row
    is in [own_from, own_to) (level coordinates)."""

    level: int
    start: int
    stop: int
    own_from: int
    own_to: int


class DlibLevelsDetector:
    """``detect(image, upsample, adjust_threshold)`` equal to dlib's ``run``, levels in parallel."""

    def __init__(self, model: HogModel | None = None, threads: int = 2, min_band_rows: int = 256) -> None:
        import dlib

        if model is None:
            from face_engine.port.hog.model import load_frontal_face_model

            model = load_frontal_face_model()
        self.model = model
        self._dlib = dlib
        self._down = dlib.pyramid_down(6)
        self.threads = max(1, threads)  # the caller's and threads − 1 of the pool's
        self.min_band_rows = max(min_band_rows, 2 * BAND_OVERLAP)
        # dlib's detectors keep scratch buffers: each scan takes one from this pool and returns it
        # (one more is made when every one is in use: several callers at once).
        self._saved = serialize_hog_detector(model, max_pyramid_levels=1, nms=(1.0, 1.0))
        self._detectors: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.threads):
            self._detectors.put(self._new_detector())
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="hog-level") if self.threads > 1 else None

    def _new_detector(self) -> Any:
        with tempfile.TemporaryDirectory(prefix="facerec-hog-") as tmp:
            path = Path(tmp) / "one_level.svm"
            path.write_bytes(self._saved)
            return self._dlib.fhog_object_detector(str(path))

    def _scan_one_level(self, image: np.ndarray, adjust: float) -> list[tuple[tuple[int, int, int, int], float, int]]:
        try:
            detector = self._detectors.get_nowait()
        except queue.Empty:
            detector = self._new_detector()
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

    def plan(self, sizes: Sequence[tuple[int, int]]) -> list[Band]:
        """The scans of one image, in level order. A level holding more than 1/threads of the
        pyramid's pixels would keep one thread busy after the others are done, so it is cut into
        row bands (on the 8-pixel cell grid, each reading ``BAND_OVERLAP`` rows beyond the rows it
        owns, none under ``min_band_rows``). On 2 cores no level is cut: level 0 is ~30 %."""
        total = sum(rows * cols for rows, cols in sizes)
        bands: list[Band] = []
        for lvl, (rows, cols) in enumerate(sizes):
            count = min(math.ceil(rows * cols * self.threads / total), rows // self.min_band_rows)
            if count < 2:
                bands.append(Band(lvl, 0, rows, -_FAR, _FAR))
                continue
            cuts = [round(rows * k / count) // CELL * CELL for k in range(1, count)]
            owned = list(zip([-_FAR, *cuts], [*cuts, _FAR], strict=True))
            bands.extend(Band(lvl, max(0, lo - BAND_OVERLAP), min(rows, hi + BAND_OVERLAP), lo, hi)
                         for lo, hi in owned)
        return bands

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
        levels: list[Future[np.ndarray]] = [Future() for _ in sizes]
        levels[0].set_result(img)
        # One queue of scans in level order: the pool's threads take the next one as they free
        # up, and this thread joins them once it has made the pyramid's smaller levels.
        todo: deque[Band] = deque(self.plan(sizes))
        cands: list[tuple[tuple[int, int, int, int], HogDetection]] = []

        def work() -> None:
            while True:
                try:
                    band = todo.popleft()
                except IndexError:
                    return
                found = self._scan_one_level(levels[band.level].result()[band.start:band.stop], adjust_threshold)
                for (left, top, right, bottom), score, d in found:
                    top, bottom = top + band.start, bottom + band.start
                    if band.own_from <= top < band.own_to:
                        r = rect_up6((left, top, right, bottom), band.level)
                        cands.append(((d, band.level, top, left), HogDetection(*r, score, d)))

        helpers = [self._pool.submit(work) for _ in range(self.threads - 1)] if self._pool else []
        try:
            for lvl in range(1, len(sizes)):
                levels[lvl].set_result(np.asarray(self._down(levels[lvl - 1].result())))
        except BaseException as exc:  # never leave a scan waiting for a level that will not come
            todo.clear()
            for pending in levels:
                if not pending.done():
                    pending.set_exception(exc)
            wait([helper for helper in helpers if not helper.cancel()])
            raise
        work()
        for helper in helpers:
            # One still queued behind another caller's scans has nothing left to do: not waited for.
            if not helper.cancel():
                helper.result()
        # dlib's scan order (detector, level, row, column) for equal scores, then its NMS
        found = nms([det for _, det in sorted(cands, key=lambda item: item[0])], self.model.nms_iou,
                    self.model.nms_covered)
        return map_down(found, upsample)

    def detect_batch(self, images: Sequence[np.ndarray], upsample: int = 0,
                     adjust_threshold: float = 0.0) -> list[list[HogDetection]]:
        return [self.detect(im, upsample, adjust_threshold) for im in images]

    __call__ = detect
