"""The exact numpy reference of ``dlib.get_frontal_face_detector()``: scan, threshold, map, NMS.

Written from ``dlib/image_processing/{scan_fhog_pyramid.h,object_detector.h,box_overlap_testing.h}``
and ``dlib/image_transforms/spatial_filtering.h`` (v20.0.1), and the Python binding's ``run``
(``tools/python/src/simple_object_detector_py.h``):

1. ``upsample`` times ``pyramid_up`` (a 2× bilinear resize), then the ``pyramid_down<6>`` levels;
2. per level, the 31 fHOG planes, padded for the 10×10-cell filters;
3. per detector, its response: each plane correlated with each rank-1 term (a row pass then a
   column pass, float32), all summed into one response image. dlib's loops give the float32
   additions a fixed order: columns in SIMD groups of 8 keep three partial sums (taps 0, 3, 6, 9 /
   1, 4, 7 / 2, 5, 8) combined at the end, the last columns add the taps one by one. Repeating
   that order makes the responses bit-identical;
4. a window is a detection when its response ≥ bias + adjust_threshold; its score is the
   response − bias (double); the 10×10-cell window maps to an 80×80 box on its level
   (``fhog_to_image``), then up through the levels (p·1.2 + 0.3, rounded);
5. all detectors' windows sorted by score, then greedy NMS: a box is dropped when it overlaps a
   kept one by intersection / bounding box of both > 0.330 or covers / is covered > 0.789 —
   on the upsampled image's boxes, which are mapped down only afterwards (rounding the boxes
   first changes which overlaps pass the thresholds).

dlib sorts with ``std::sort``, which leaves equal scores in an unspecified order; here they stay
in scan order (detector, level, row, column). Only exactly equal scores of overlapping boxes
could make the two differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from face_engine.port.hog.fhog import extract_fhog_features
from face_engine.port.hog.model import HogFilterBank, HogModel
from face_engine.port.hog.pyramid import as_detector_image, level_sizes, pyramid_down6, pyramid_up, rect_down2, rect_up6

__all__ = [
    "HogDetection",
    "NumpyHogDetector",
    "apply_filter_banks",
    "map_down",
    "nms",
    "simd_columns_end",
    "window_rect",
    "window_responses",
]

_F32 = np.float32
Rect = tuple[int, int, int, int]


class HogDetection(NamedTuple):
    """One face: dlib's inclusive rectangle, its score (response − bias), and which of the
    detector's filters found it (dlib's ``weight_index``)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float
    detector: int

    @property
    def rect(self) -> Rect:
        return (self.left, self.top, self.right, self.bottom)


# --- filtering --------------------------------------------------------------------------------


def _simd_sum(terms: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """dlib's 3-accumulator SIMD tap loop: t1 over taps 0,3,6,…, t2 over 1,4,…, t3 over 2,5,…
    while three taps remain, the rest into t1; result t1 + (t2 + t3)."""
    t1, t2, t3 = np.zeros(shape, _F32), np.zeros(shape, _F32), np.zeros(shape, _F32)
    n, size = 0, len(terms)
    while n < size - 2:
        t1 = t1 + terms[n]
        t2 = t2 + terms[n + 1]
        t3 = t3 + terms[n + 2]
        n += 3
    while n < size:
        t1 = t1 + terms[n]
        n += 1
    return t1 + (t2 + t3)


def _scalar_sum(terms: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    total = np.zeros(shape, _F32)
    for t in terms:
        total = total + t
    return total


def _column_groups(first: int, last: int) -> int:
    """First column of dlib's scalar tail: SIMD groups of 8 start at ``first`` while c < last − 7."""
    c = first
    while c < last - 7:
        c += 8
    return c


def _separable(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, Rect]:
    """``float_spatially_filter_image_separable`` of one plane with K rank-1 terms at once
    (rows, cols: K × taps): K × valid rows × valid cols, and the valid rectangle."""
    nr, nc = plane.shape
    k, row_taps = rows.shape
    col_taps = cols.shape[1]
    first_row, first_col = col_taps // 2, row_taps // 2
    last_row, last_col = nr - (col_taps - 1) // 2, nc - (row_taps - 1) // 2
    split = _column_groups(first_col, last_col) - first_col
    width, height = last_col - first_col, last_row - first_row
    # Row pass over every row: scratch[:, r, c] = Σ_n plane[r, c + n] · row[n].
    scratch = np.empty((k, nr, width), _F32)
    for lo, hi, summer in ((0, split, _simd_sum), (split, width, _scalar_sum)):
        terms = [plane[None, :, lo + n : hi + n] * rows[:, n, None, None] for n in range(row_taps)]
        scratch[..., lo:hi] = summer(terms, (k, nr, hi - lo))
    # Column pass over the valid rows: out[:, r, c] = Σ_m scratch[:, r + m, c] · col[m].
    out = np.empty((k, height, width), _F32)
    for lo, hi, summer in ((0, split, _simd_sum), (split, width, _scalar_sum)):
        terms = [scratch[:, m : m + height, lo:hi] * cols[:, m, None, None] for m in range(col_taps)]
        out[..., lo:hi] = summer(terms, (k, height, hi - lo))
    return out, (first_col, first_row, last_col - 1, last_row - 1)


def _full(plane: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, Rect]:
    """``float_spatially_filter_image`` (a full 2-D filter) with dlib's tap order."""
    nr, nc = plane.shape
    fr, fc = f.shape
    first_row, first_col = fr // 2, fc // 2
    last_row, last_col = nr - (fr - 1) // 2, nc - (fc - 1) // 2
    split = _column_groups(first_col, last_col)
    rows, width = last_row - first_row, last_col - first_col
    out = np.empty((rows, width), _F32)

    def terms(c0: int, c1: int) -> list[np.ndarray]:
        return [plane[m : m + rows, c0 - first_col + n : c1 - first_col + n] * f[m, n]
                for m in range(fr) for n in range(fc)]

    # SIMD columns: the three accumulators run over all rows of the filter (m-major), with the
    # per-row split into taps n ≡ 0, 1, 2 (mod 3) while three remain, the rest into the first.
    c0, c1 = first_col, split
    acc = [np.zeros((rows, c1 - c0), _F32) for _ in range(3)]
    for m in range(fr):
        n = 0
        while n < fc - 2:
            for k in range(3):
                acc[k] = acc[k] + plane[m : m + rows, c0 - first_col + n + k : c1 - first_col + n + k] * f[m, n + k]
            n += 3
        while n < fc:
            acc[0] = acc[0] + plane[m : m + rows, c0 - first_col + n : c1 - first_col + n] * f[m, n]
            n += 1
    out[:, : c1 - c0] = acc[0] + (acc[1] + acc[2])
    out[:, c1 - c0 :] = _scalar_sum(terms(split, last_col), (rows, last_col - split))
    return out, (first_col, first_row, last_col - 1, last_row - 1)


def apply_filter_banks(banks: Sequence[HogFilterBank], planes: np.ndarray) -> list[tuple[np.ndarray, Rect]]:
    """``apply_filters_to_fhog`` for each bank: its response over the valid area, and that area in
    plane coordinates (left, top, right, bottom); an empty area for an empty feature map.

    A bank's response is the sum of its terms plane by plane, term by term, in float32: the
    terms of all banks that share a plane are filtered together, and each bank adds its own in
    its own order."""
    empty = (np.zeros((0, 0), _F32), (0, 0, -1, -1))
    if planes.shape[1] == 0 or planes.shape[2] == 0:
        return [empty for _ in banks]
    totals: list[np.ndarray | None] = [None] * len(banks)
    areas: list[Rect] = [(0, 0, -1, -1)] * len(banks)

    def add(d: int, out: np.ndarray, area: Rect) -> None:
        previous = totals[d]
        totals[d] = out if previous is None else previous + out
        areas[d] = area

    separable = [d for d, b in enumerate(banks) if b.separable]
    for i in range(len(planes)):
        owners = [d for d in separable for _ in banks[d].row_filters[i]]
        if owners:
            rows = np.stack([r for d in separable for r in banks[d].row_filters[i]])
            cols = np.stack([c for d in separable for c in banks[d].col_filters[i]])
            outs, area = _separable(planes[i], rows, cols)
            for d, out in zip(owners, outs, strict=True):
                add(d, out, area)
        for d, bank in enumerate(banks):
            if not bank.separable:
                add(d, *_full(planes[i], bank.filters[i]))
    # A bank without any rank-1 term leaves dlib's response all zeros, over no area.
    return [empty if t is None else (t, a) for t, a in zip(totals, areas, strict=True)]


def simd_columns_end(hog_cols: int, filter_cols: int) -> int:
    """First response column (plane coordinates) that dlib's filters compute with scalar code,
    for a level whose features are ``hog_cols`` cells wide."""
    first = filter_cols // 2
    last = hog_cols + filter_cols - 1 - (filter_cols - 1) // 2
    return _column_groups(first, last)


def window_responses(bank: HogFilterBank, patches: np.ndarray, simd: np.ndarray) -> np.ndarray:
    """dlib's response of ``bank`` at chosen windows, bit for bit, float32 (K,).

    ``patches``: K × 31 × rows × cols, the padded feature planes under each window; ``simd``:
    whether each window's column is one dlib computes in its SIMD groups. The same additions as
    :func:`apply_filter_banks`, only for these windows: the fast detectors rescore with it."""
    k = len(patches)
    out = np.zeros(k, _F32)
    if k == 0:
        return out
    variants = []
    for summer in (_simd_sum, _scalar_sum):
        total: np.ndarray | None = None
        for i in range(len(patches[0])):
            plane = patches[:, i]
            if bank.separable:
                for row, col in zip(bank.row_filters[i], bank.col_filters[i], strict=True):
                    rows = summer([plane[:, :, n] * row[n] for n in range(len(row))], (k, plane.shape[1]))
                    term = summer([rows[:, m] * col[m] for m in range(len(col))], (k,))
                    total = term if total is None else total + term
            else:
                term = _window_full(plane, bank.filters[i], summer is _simd_sum)
                total = term if total is None else total + term
        variants.append(np.zeros(k, _F32) if total is None else total)
    return np.where(simd, variants[0], variants[1])


def _window_full(plane: np.ndarray, f: np.ndarray, simd: bool) -> np.ndarray:
    """:func:`_full`'s sum for one output per window (plane: K × rows × cols)."""
    fr, fc = f.shape
    if not simd:
        return _scalar_sum([plane[:, m, n] * f[m, n] for m in range(fr) for n in range(fc)], (len(plane),))
    acc = [np.zeros(len(plane), _F32) for _ in range(3)]
    for m in range(fr):
        n = 0
        while n < fc - 2:
            for j in range(3):
                acc[j] = acc[j] + plane[:, m, n + j] * f[m, n + j]
            n += 3
        while n < fc:
            acc[0] = acc[0] + plane[:, m, n] * f[m, n]
            n += 1
    return acc[0] + (acc[1] + acc[2])


# --- windows to boxes -------------------------------------------------------------------------


def _fhog_to_image(p: int, cell: int, pad: int) -> int:
    v = (p + 1 - (pad - 1) // 2) * cell + 1
    return v + (cell // 2 if v >= 0 else -(cell // 2))


def window_rect(r: int, c: int, model: HogModel, level: int) -> Rect:
    """The image rectangle of the window centred on response cell (r, c) of a level."""
    sc = model.scanner
    rows, cols = sc.filter_size
    box_h, box_w = rows - 2 * sc.padding, cols - 2 * sc.padding
    left, top = c - box_w // 2, r - box_h // 2
    right, bottom = left + box_w - 1, top + box_h - 1
    cell = sc.cell_size
    rect = (_fhog_to_image(left, cell, cols), _fhog_to_image(top, cell, rows),
            _fhog_to_image(right, cell, cols), _fhog_to_image(bottom, cell, rows))
    return rect_up6(rect, level)


def _overlaps(a: Rect, b: Rect, iou: float, covered: float) -> bool:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inner = max(iw, 0) * max(ih, 0)
    if inner == 0:
        return False
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def nms(candidates: list[HogDetection], iou: float, covered: float) -> list[HogDetection]:
    """Best first, drop any box overlapping a kept one (all detectors together, as dlib does)."""
    kept: list[HogDetection] = []
    for det in sorted(candidates, key=lambda d: -d.score):  # stable: ties stay in scan order
        if not any(_overlaps(k.rect, det.rect, iou, covered) for k in kept):
            kept.append(det)
    return kept


def detections_from_responses(model: HogModel, responses: Sequence[Sequence[tuple[np.ndarray, Rect]]],
                              adjust_threshold: float = 0.0, upsample: int = 0) -> list[HogDetection]:
    """responses[detector][level] = (response over the valid area, that area) → final detections."""
    found: list[HogDetection] = []
    for d, bank in enumerate(model.banks):
        thresh = bank.threshold
        for level, (resp, area) in enumerate(responses[d]):
            if resp.size == 0:
                continue
            # float32 response against the double threshold, as dlib compares them.
            rows, cols = np.nonzero(resp.astype(np.float64) >= thresh + adjust_threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                rect = window_rect(r + area[1], c + area[0], model, level)
                found.append(HogDetection(*rect, float(resp[r, c]) - thresh, d))
    return map_down(nms(found, model.nms_iou, model.nms_covered), upsample)


def map_down(found: list[HogDetection], upsample: int) -> list[HogDetection]:
    """Boxes on the upsampled image → the caller's image; dlib does this after its NMS."""
    if not upsample:
        return found
    return [HogDetection(*rect_down2(d.rect, upsample), d.score, d.detector) for d in found]


# --- the detector -----------------------------------------------------------------------------


class NumpyHogDetector:
    """``dlib.get_frontal_face_detector()`` in numpy: ``detect(image, upsample, adjust_threshold)``
    returns what ``detector.run(image, upsample, adjust_threshold)`` returns, bit for bit."""

    def __init__(self, model: HogModel | None = None) -> None:
        if model is None:
            from face_engine.port.hog.model import load_frontal_face_model

            model = load_frontal_face_model()
        self.model = model

    def levels(self, image: np.ndarray) -> list[np.ndarray]:
        """The pyramid dlib scans (the image first)."""
        sc = self.model.scanner
        sizes = level_sizes(image.shape[0], image.shape[1], sc.min_layer, sc.max_pyramid_levels)
        out = [image]
        for _ in sizes[1:]:
            out.append(pyramid_down6(out[-1]))
        return out

    def features(self, image: np.ndarray) -> list[np.ndarray]:
        """31-plane fHOG maps of every level, padded for the filters."""
        rows, cols = self.model.scanner.filter_size
        cell = self.model.scanner.cell_size
        return [extract_fhog_features(level, cell, rows, cols) for level in self.levels(image)]

    def detect(self, image: np.ndarray, upsample: int = 0, adjust_threshold: float = 0.0) -> list[HogDetection]:
        if upsample < 0:
            raise ValueError("upsample must be ≥ 0")
        img = as_detector_image(image)
        for _ in range(upsample):
            img = pyramid_up(img)
        feats = self.features(img)
        per_level = [apply_filter_banks(self.model.banks, f) for f in feats]
        responses = [[level[d] for level in per_level] for d in range(self.model.num_detectors)]
        return detections_from_responses(self.model, responses, adjust_threshold, upsample)

    def detect_batch(self, images: Sequence[np.ndarray], upsample: int = 0,
                     adjust_threshold: float = 0.0) -> list[list[HogDetection]]:
        return [self.detect(im, upsample, adjust_threshold) for im in images]

    __call__ = detect
