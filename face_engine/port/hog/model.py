"""dlib's HOG face detector as data: read from ``get_frontal_face_detector().save()``, never downloaded.

``dlib.get_frontal_face_detector()`` is an ``object_detector<scan_fhog_pyramid<pyramid_down<6>>>``
holding five linear filters (front, left, right, and two rotated views). Its ``save`` writes:

* object_detector version (2);
* the scanner: version (1), the feature extractor (no bytes), its cached feature pyramid (empty:
  ``array`` max_size and size, both 0), cell size, padding, detection window width and height,
  max pyramid levels, min pyramid layer width and height, the nuclear-norm strength (a training
  setting) and the number of dimensions (31 planes × filter cells), as a check;
* the non-maximum-suppression tester: IoU threshold and percent-covered threshold (doubles);
* the number of weight vectors, then each as a dlib matrix (rows and columns stored negated,
  then row-major doubles): the 31 planes' filters, then the bias, which is the detection
  threshold (a window is a detection when its response ≥ bias + adjust_threshold).

When dlib loads the file it derives, per weight vector, the float32 filters and their separable
decomposition (:func:`face_engine.port.hog.svd.separable_filters`); :class:`HogFilterBank` holds
both, plus which of the two dlib scans with (``apply_filters_to_fhog``).

The pure-Python SVD of the 155 filters takes ~0.2 s, less than dlib's own ``save`` (~0.4 s), so
nothing derived is written to disk.
"""

from __future__ import annotations

import functools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face_engine.port.dat_format import DatReader
from face_engine.port.hog.svd import separable_filters

__all__ = [
    "NUM_PLANES",
    "HogFilterBank",
    "HogModel",
    "HogScanner",
    "dlib_frontal_face_bytes",
    "load_frontal_face_model",
    "parse_hog_detector",
    "serialize_hog_detector",
]

NUM_PLANES = 31  # fHOG: 18 signed + 9 unsigned orientations + 4 texture (gradient energy) planes


@dataclass(frozen=True)
class HogScanner:
    """``scan_fhog_pyramid<pyramid_down<6>>``'s settings."""

    cell_size: int
    padding: int  # filter cells beyond the detection window
    window: tuple[int, int]  # detection window (width, height) in pixels
    max_pyramid_levels: int
    min_layer: tuple[int, int]  # the pyramid stops at the first level narrower or lower than this
    nuclear_norm_strength: float
    num_dims: int

    @property
    def filter_size(self) -> tuple[int, int]:
        """(rows, cols) of each filter in cells: ``compute_fhog_window_size``."""
        rows = _image_to_fhog_span(self.window[1], self.cell_size) + 2 * self.padding
        cols = _image_to_fhog_span(self.window[0], self.cell_size) + 2 * self.padding
        return rows, cols


def _image_to_fhog_span(size: int, cell: int) -> int:
    """Width of ``image_to_fhog(centered_rect((0, 0), size, size))``: C++ division truncates."""
    lo, hi = -(size // 2), -(size // 2) + size - 1

    def to_cell(p: int) -> int:
        return int((p - 1) / cell) - 1  # truncation toward zero, like dlib's point / long

    return to_cell(hi) - to_cell(lo) + 1


@dataclass(frozen=True)
class HogFilterBank:
    """One weight vector as dlib scans with it (``fhog_filterbank``)."""

    filters: np.ndarray  # 31 × rows × cols float32
    row_filters: tuple[tuple[np.ndarray, ...], ...]  # per plane, the rank-1 terms' row vectors
    col_filters: tuple[tuple[np.ndarray, ...], ...]  # ... and column vectors (float32)
    threshold: float  # the bias, in double precision

    @property
    def num_separable(self) -> int:
        return sum(len(r) for r in self.row_filters)

    @property
    def separable(self) -> bool:
        """dlib scans with the rank-1 terms when that is cheaper than the full filters."""
        rows, cols = self.filters.shape[1:]
        return not self.num_separable > len(self.filters) * min(rows, cols) / 3.0

    @classmethod
    def from_weights(cls, w: np.ndarray, rows: int, cols: int) -> HogFilterBank:
        size = rows * cols
        planes = [w[i * size : (i + 1) * size].reshape(rows, cols) for i in range(NUM_PLANES)]
        terms = [separable_filters(p) for p in planes]
        return cls(
            filters=np.stack(planes).astype(np.float32),
            row_filters=tuple(tuple(t[0]) for t in terms),
            col_filters=tuple(tuple(t[1]) for t in terms),
            threshold=float(w[NUM_PLANES * size]),
        )


@dataclass(frozen=True)
class HogModel:
    """The whole detector: scanner settings, NMS thresholds, and the filter banks."""

    scanner: HogScanner
    nms_iou: float
    nms_covered: float
    weights: np.ndarray  # num_detectors × (num_dims + 1) float64, as saved
    banks: tuple[HogFilterBank, ...]

    @property
    def num_detectors(self) -> int:
        return len(self.banks)


# --- parsing ---------------------------------------------------------------------------------


def _dlib_matrix(r: DatReader, what: str) -> np.ndarray:
    start = r.pos
    nr, nc = r.integer(f"{what} rows"), r.integer(f"{what} cols")
    if nr > 0 or nc > 0:  # the old format stored them positive; dlib writes them negated since 2013
        raise r.error(f"{what} uses dlib's old matrix encoding (unsupported)", at=start)
    nr, nc = -nr, -nc
    if nr * nc > 10_000_000:
        raise r.error(f"{what} of {nr}×{nc} is implausible", at=start)
    return np.array([r.real(what) for _ in range(nr * nc)], dtype=np.float64).reshape(nr, nc)


def _scanner(r: DatReader) -> HogScanner:
    start = r.pos
    if (version := r.integer("scanner version")) != 1:
        raise r.error(f"scan_fhog_pyramid version {version} is unknown", at=start)
    # default_fhog_feature_extractor serializes nothing; the feature pyramid is an empty array.
    max_size, size = r.unsigned("feature pyramid max_size"), r.unsigned("feature pyramid size")
    if max_size or size:
        raise r.error("the scanner holds a cached feature pyramid; only empty ones are expected")
    cell = r.integer("cell size")
    padding = r.unsigned("padding")
    window = (r.unsigned("window width"), r.unsigned("window height"))
    levels = r.unsigned("max pyramid levels")
    min_layer = (r.unsigned("min pyramid layer width"), r.unsigned("min pyramid layer height"))
    strength = r.real("nuclear norm regularization strength")
    dims = r.integer("number of dimensions")
    scanner = HogScanner(cell, padding, window, levels, min_layer, strength, dims)
    rows, cols = scanner.filter_size
    if cell <= 0 or dims != rows * cols * NUM_PLANES:
        raise r.error(f"scanner stores {dims} dimensions, its settings give {rows}×{cols}×{NUM_PLANES}")
    return scanner


def parse_hog_detector(data: bytes, *, source: str = "<bytes>") -> tuple[HogScanner, float, float, np.ndarray]:
    """(scanner, NMS IoU, NMS covered, weights) from a saved ``fhog_object_detector``; every byte
    must be accounted for. Raises :class:`DatFormatError`."""
    r = DatReader(data, source=source)
    if not data:
        raise r.error("file is empty")
    start = r.pos
    version = r.integer("object_detector version")
    if version != 2:
        raise r.error(f"object_detector version {version} is not supported (expected 2)", at=start)
    r.push("scanner")
    scanner = _scanner(r)
    r.pop()
    iou, covered = r.real("NMS IoU threshold"), r.real("NMS percent covered threshold")
    if not (0 <= iou <= 1 and 0 <= covered <= 1):
        raise r.error(f"NMS thresholds {iou}, {covered} are outside [0, 1]")
    count = r.unsigned("number of detectors")
    if not 1 <= count <= 1000:
        raise r.error(f"{count} detectors is implausible")
    weights = []
    for i in range(count):
        w = _dlib_matrix(r, f"weight vector {i}")
        if w.shape != (scanner.num_dims + 1, 1):
            raise r.error(f"weight vector {i} has shape {w.shape}, expected ({scanner.num_dims + 1}, 1)")
        weights.append(w[:, 0])
    r.expect_end()
    return scanner, iou, covered, np.stack(weights)


def build_model(data: bytes, *, source: str = "<bytes>") -> HogModel:
    """Parse a saved detector and derive its filter banks as dlib does when it loads it."""
    scanner, iou, covered, weights = parse_hog_detector(data, source=source)
    rows, cols = scanner.filter_size
    banks = tuple(HogFilterBank.from_weights(w, rows, cols) for w in weights)
    return HogModel(scanner, iou, covered, weights, banks)


# --- writing (the inverse of parsing; used to run dlib on one pyramid level at a time) ---------


def _write_int(v: int) -> bytes:
    raw = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(raw) | (0x80 if v < 0 else 0)]) + raw


def _write_real(x: float) -> bytes:
    """dlib's float_details of a finite double: a 53-bit mantissa and its exponent, then whole
    zero low bytes shifted off the mantissa (at most 8)."""
    frac, exp = math.frexp(x)
    mantissa, exponent = int(frac * (1 << 53)), exp - 53
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return _write_int(mantissa) + _write_int(exponent)


def serialize_hog_detector(model: HogModel, *, max_pyramid_levels: int | None = None,
                           nms: tuple[float, float] | None = None) -> bytes:
    """What dlib's ``save`` writes for ``model`` (byte-identical for an unmodified model), with
    the pyramid depth and the NMS thresholds optionally replaced."""
    s = model.scanner
    iou, covered = nms if nms is not None else (model.nms_iou, model.nms_covered)
    parts = [_write_int(2), _write_int(1), _write_int(0), _write_int(0), _write_int(s.cell_size),
             _write_int(s.padding), _write_int(s.window[0]), _write_int(s.window[1]),
             _write_int(max_pyramid_levels if max_pyramid_levels is not None else s.max_pyramid_levels),
             _write_int(s.min_layer[0]), _write_int(s.min_layer[1]), _write_real(s.nuclear_norm_strength),
             _write_int(s.num_dims), _write_real(iou), _write_real(covered), _write_int(len(model.weights))]
    for w in model.weights:
        parts += [_write_int(-len(w)), _write_int(-1), *(_write_real(float(v)) for v in w)]
    return b"".join(parts)


def dlib_frontal_face_bytes() -> bytes:
    """What the installed dlib's ``get_frontal_face_detector().save()`` writes."""
    import dlib

    with tempfile.TemporaryDirectory(prefix="facerec-hog-") as tmp:
        path = Path(tmp) / "frontal_face_detector.svm"
        dlib.get_frontal_face_detector().save(str(path))
        return path.read_bytes()


@functools.lru_cache(maxsize=1)
def load_frontal_face_model() -> HogModel:
    """dlib's frontal face detector, from the installed dlib (once per process).

    Deriving the separable filters takes ~0.2 s and dlib's own save ~0.4 s, so nothing is cached
    on disk: the filters always come from the dlib that is installed.
    """
    return build_model(dlib_frontal_face_bytes(), source="frontal_face_detector")
