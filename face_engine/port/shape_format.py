"""Reader (and writer) for dlib's ``shape_predictor`` files, e.g. ``shape_predictor_5_face_landmarks.dat``.

Written from dlib's ``serialize(shape_predictor)`` (``dlib/image_processing/shape_predictor.h``):

* int version (1);
* ``initial_shape``: a float column vector (matrix: −rows, −cols, then the floats), x0 y0 x1 y1 …
  in the normalised face box ((0, 0) = top-left corner, (1, 1) = bottom-right corner);
* ``forests``: per cascade level a list of trees; a tree is its splits (idx1, idx2 unsigned,
  thresh float each), stored breadth first (children of node i at 2i+1 and 2i+2), then its leaf
  vectors (float matrices of 2 × parts values);
* ``anchor_idx``: per level, for each feature pixel, the part it is anchored to;
* ``deltas``: per level, for each feature pixel, its offset (x, y floats) from that part in the
  initial shape.

Every value in such a file is one of dlib's variable-length integers (floats are two of them), so
the long runs (split features, leaf values) are tokenised in one pass and decoded with numpy;
the generic :class:`~face_engine.port.dat_format.DatReader` is ~10× slower on the 1.2 M floats.
Like the network parser, this one must end at the last byte, and it checks every index and size
the predictor relies on, so a misread file fails here, not as wrong landmarks.

:func:`serialize_shape_predictor` writes the same format; the tests use it to build tiny
predictors that probe dlib's arithmetic (rounding, out-of-image reads) through dlib itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from face_engine.port.dat_format import DatFormatError, DatReader

__all__ = [
    "ShapePredictorModel",
    "load_shape_predictor",
    "parse_shape_predictor",
    "parse_shape_predictor_bytes",
    "serialize_shape_predictor",
]

_EXP_SPECIAL = (32000, 32001, 32002)  # inf, -inf, NaN exponents: never in a trained predictor


@dataclass(frozen=True, eq=False)
class ShapePredictorModel:
    """A cascade of regression-tree forests, as arrays (C levels, T trees, S splits, F pixels, P parts).

    All trees are complete binary trees of the same depth and every level samples the same number
    of feature pixels; that is how dlib's trainer builds them, and the batched versions need it.
    """

    initial_shape: np.ndarray  # float32 (2P,): x0, y0, x1, y1, … in the unit face box
    split_idx1: np.ndarray  # int64 (C, T, S): feature pixel indices, breadth-first nodes
    split_idx2: np.ndarray  # int64 (C, T, S)
    split_thresh: np.ndarray  # float32 (C, T, S): go left when pixel[idx1] − pixel[idx2] > thresh
    leaf_values: np.ndarray  # float32 (C, T, S + 1, 2P): shape updates
    anchor_idx: np.ndarray  # int64 (C, F): the part each feature pixel follows
    deltas: np.ndarray  # float32 (C, F, 2): offset from that part, in the initial shape's frame

    @property
    def num_parts(self) -> int:
        return len(self.initial_shape) // 2

    @property
    def num_cascades(self) -> int:
        return int(self.split_idx1.shape[0])

    @property
    def num_trees(self) -> int:
        """Trees per cascade level."""
        return int(self.split_idx1.shape[1])

    @property
    def tree_depth(self) -> int:
        return int(self.split_idx1.shape[2] + 1).bit_length() - 1

    @property
    def num_feature_pixels(self) -> int:
        """Feature pixels sampled per cascade level."""
        return int(self.anchor_idx.shape[1])

    @property
    def num_features(self) -> int:
        """dlib's ``shape_predictor::num_features()``: the number of leaves of all trees."""
        return self.num_cascades * self.num_trees * int(self.leaf_values.shape[2])


# --- reading --------------------------------------------------------------------------------------


class _Tokens:
    """Every integer of the file, decoded up front, and a cursor over them.

    Finding where each integer starts is sequential (its length is in its control byte): a bare
    loop over the bytes is the fastest pure-Python way (~0.6 s for this 9 MB file); decoding the
    values is vectorised.
    """

    def __init__(self, r: DatReader) -> None:
        raw = bytes(r.data)
        starts: list[int] = []
        append, pos, end = starts.append, 0, len(raw)
        while pos < end:
            append(pos)
            pos += 1 + (raw[pos] & 0x0F)
        self.r = r
        self.offsets = np.array(starts, dtype=np.int64)
        if pos > end:
            raise r.error("file is truncated inside its last integer", at=starts[-1])
        buf = np.frombuffer(raw, dtype=np.uint8)
        control = buf[self.offsets]
        sizes = control & 0x0F
        bad = np.flatnonzero(((control & 0x70) != 0) | (sizes == 0) | (sizes > 8))
        if bad.size:
            at = int(self.offsets[bad[0]])
            raise r.error("invalid integer control byte (not a dlib shape_predictor file?)", at=at)
        magnitude = np.zeros(len(self.offsets), dtype=np.uint64)
        padded = np.concatenate([buf, np.zeros(8, np.uint8)])
        for k in range(int(sizes.max(initial=0))):
            byte = np.where(sizes > k, padded[self.offsets + 1 + k], 0).astype(np.uint64)
            magnitude |= byte << np.uint64(8 * k)
        if (magnitude >= np.uint64(1 << 63)).any():
            raise r.error("an integer overflows int64")
        self.values = magnitude.astype(np.int64)
        self.values[(control & 0x80) != 0] *= -1
        self.i = 0

    def error(self, message: str, at_token: int | None = None) -> DatFormatError:
        i = self.i if at_token is None else at_token
        at = int(self.offsets[i]) if i < len(self.offsets) else len(self.r.data)
        return self.r.error(message, at=at)

    def one(self, what: str, *, unsigned: bool = True) -> int:
        if self.i >= len(self.values):
            raise self.error(f"file is truncated: {what} is missing")
        value = int(self.values[self.i])
        if unsigned and value < 0:
            raise self.error(f"{what} is negative ({value})")
        self.i += 1
        return value

    def take(self, count: int, what: str) -> np.ndarray:
        if self.i + count > len(self.values):
            raise self.error(f"file is truncated inside {what}")
        out = self.values[self.i : self.i + count]
        self.i += count
        return out

    def floats(self, pairs: np.ndarray, what: str) -> np.ndarray:
        """float32 values from (mantissa, exponent) pairs, checking they are genuine float32s."""
        mantissa, exponent = pairs[..., 0], pairs[..., 1]
        if np.isin(exponent, _EXP_SPECIAL).any():
            raise self.r.error(f"{what} holds inf or NaN")
        if (np.abs(mantissa) > (1 << 53)).any() or (np.abs(exponent) > 1100).any():
            raise self.r.error(f"{what} holds a value that is not a float")
        wide = np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32))
        out = wide.astype(np.float32)
        if not np.array_equal(out.astype(np.float64), wide):
            raise self.r.error(f"{what} holds a value that is not a float32")
        return out

    def float_vector(self, what: str) -> np.ndarray:
        """A ``matrix<float,0,1>``: rows and columns (negated by current dlib), then the values."""
        at = self.i
        rows, cols = abs(self.one(f"{what} rows", unsigned=False)), abs(self.one(f"{what} columns", unsigned=False))
        if cols != 1 or rows > 1 << 20:
            raise self.error(f"{what} is a {rows}×{cols} matrix, expected a column vector", at)
        return self.floats(self.take(2 * rows, what).reshape(rows, 2), what)


def _forest(t: _Tokens, level: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """One level's trees: splits (T, S, 4) integers idx1, idx2, mantissa, exponent; leaf tokens."""
    n_trees = t.one(f"level {level} tree count")
    splits, leaves = [], []
    leaf_tokens = 2 + 4 * parts  # rows, columns, then 2P floats of two integers each
    for tree in range(n_trees):
        what = f"level {level} tree {tree}"
        n_splits = t.one(f"{what} split count")
        splits.append(t.take(4 * n_splits, f"{what} splits").reshape(n_splits, 4))
        n_leaves = t.one(f"{what} leaf count")
        if n_leaves != n_splits + 1 or n_leaves & (n_leaves - 1):
            raise t.error(f"{what}: {n_splits} splits and {n_leaves} leaves is not a complete binary tree")
        leaves.append(t.take(n_leaves * leaf_tokens, f"{what} leaves").reshape(n_leaves, leaf_tokens))
    if not splits or len({s.shape for s in splits}) != 1:
        raise t.error(f"level {level}: its trees must exist and all have one depth")
    return np.stack(splits), np.stack(leaves)


def parse_shape_predictor_bytes(data: bytes, *, source: str = "<bytes>") -> ShapePredictorModel:
    """Parse a whole ``shape_predictor`` file; every byte must be accounted for."""
    r = DatReader(data, source=source)
    if not data:
        raise r.error("file is empty")
    t = _Tokens(r)
    version = t.one("shape_predictor version", unsigned=False)
    if version != 1:
        raise t.error(f"not a dlib shape_predictor file: version {version}, expected 1", 0)
    initial = t.float_vector("initial shape")
    if len(initial) < 2 or len(initial) % 2:
        raise t.error(f"initial shape has {len(initial)} values, expected 2 per part")
    parts = len(initial) // 2

    levels = t.one("cascade count")
    forests = [_forest(t, level, parts) for level in range(levels)]
    if len({s.shape for s, _ in forests}) > 1:
        raise t.error("cascade levels differ in tree count or depth (not supported)")
    if t.one("anchor level count") != levels:
        raise t.error("anchor indices and forests have different level counts")
    anchors = [t.take(t.one(f"level {i} anchor count"), f"level {i} anchors") for i in range(levels)]
    if t.one("delta level count") != levels:
        raise t.error("deltas and forests have different level counts")
    deltas = [t.take(4 * t.one(f"level {i} delta count"), f"level {i} deltas").reshape(-1, 2, 2) for i in range(levels)]
    if t.i != len(t.values):
        raise t.error(f"{len(t.values) - t.i} unexpected integers after the predictor")

    if len({len(a) for a in anchors} | {len(d) for d in deltas}) > 1:
        raise r.error("levels differ in feature pixel count, or anchors and deltas disagree")
    n_pixels = len(anchors[0]) if levels else 0
    n_trees, n_splits = forests[0][0].shape[:2] if levels else (0, 0)
    splits = np.stack([s for s, _ in forests]) if levels else np.zeros((0, 0, 0, 4), np.int64)
    leaf_tokens = np.stack([leaf for _, leaf in forests]) if levels else np.zeros((0, 0, 1, 2 + 4 * parts), np.int64)
    if not ((np.abs(leaf_tokens[..., 0]) == 2 * parts) & (np.abs(leaf_tokens[..., 1]) == 1)).all():
        raise r.error(f"a leaf vector does not have {2 * parts} values")
    anchor_idx = np.stack(anchors) if levels else np.zeros((0, 0), np.int64)
    if anchor_idx.size and (anchor_idx.min() < 0 or anchor_idx.max() >= parts):
        raise r.error("an anchor index names a part the shape does not have")
    idx = splits[..., :2]
    if idx.size and (idx.min() < 0 or idx.max() >= n_pixels):
        raise r.error("a split names a feature pixel its level does not sample")
    shape = (levels, n_trees, n_splits)
    return ShapePredictorModel(
        initial_shape=initial,
        split_idx1=np.ascontiguousarray(splits[..., 0]).reshape(shape),
        split_idx2=np.ascontiguousarray(splits[..., 1]).reshape(shape),
        split_thresh=t.floats(splits[..., 2:], "split thresholds").reshape(shape),
        leaf_values=t.floats(leaf_tokens[..., 2:].reshape(*leaf_tokens.shape[:3], 2 * parts, 2), "leaf values"),
        anchor_idx=anchor_idx,
        deltas=t.floats(np.stack(deltas), "deltas") if levels else np.zeros((0, 0, 2), np.float32),
    )


def parse_shape_predictor(path: str | Path) -> ShapePredictorModel:
    path = Path(path)
    return parse_shape_predictor_bytes(path.read_bytes(), source=path.name)


@lru_cache(maxsize=2)
def load_shape_predictor(path: str | None = None) -> ShapePredictorModel:
    """The 5-point model shipped by ``face_recognition_models`` (or ``path``), parsed once per process."""
    if path is None:
        from face_engine.weights import LANDMARKS_5, weight_path

        path = str(weight_path(LANDMARKS_5))
    return parse_shape_predictor(path)


# --- writing (for tests that probe dlib with hand-made predictors) -----------------------------


def _put_int(out: bytearray, value: int) -> None:
    magnitude = abs(int(value))
    size = max(1, (magnitude.bit_length() + 7) // 8)
    if size > 8:
        raise DatFormatError(f"integer {value} does not fit dlib's encoding")
    out.append(size | (0x80 if value < 0 else 0))
    out += magnitude.to_bytes(size, "little")


def _put_float(out: bytearray, value: float) -> None:
    """dlib's float record: integer mantissa (at most 24 bits for a float32), integer exponent."""
    value = float(np.float32(value))
    if not math.isfinite(value):
        raise DatFormatError("only finite floats are written")
    frac, exp = math.frexp(value)
    mantissa, exponent = int(frac * (1 << 24)), exp - 24
    # dlib drops whole zero bytes from the mantissa (up to 8 times: zero is written as 0·2^40);
    # doing the same makes a parsed file serialize back to the identical bytes.
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    _put_int(out, mantissa)
    _put_int(out, exponent)


def _put_vector(out: bytearray, values: np.ndarray) -> None:
    _put_int(out, -len(values))
    _put_int(out, -1)
    for v in values.tolist():
        _put_float(out, v)


def serialize_shape_predictor(model: ShapePredictorModel) -> bytes:
    """The model in dlib's format, loadable by ``dlib.shape_predictor``."""
    out = bytearray()
    _put_int(out, 1)
    _put_vector(out, model.initial_shape)
    _put_int(out, model.num_cascades)
    for c in range(model.num_cascades):
        _put_int(out, model.num_trees)
        for t in range(model.num_trees):
            _put_int(out, model.split_idx1.shape[2])
            for a, b, th in zip(model.split_idx1[c, t], model.split_idx2[c, t], model.split_thresh[c, t], strict=True):
                _put_int(out, int(a))
                _put_int(out, int(b))
                _put_float(out, float(th))
            _put_int(out, model.leaf_values.shape[2])
            for leaf in model.leaf_values[c, t]:
                _put_vector(out, leaf)
    _put_int(out, model.num_cascades)
    for c in range(model.num_cascades):
        _put_int(out, model.num_feature_pixels)
        for a in model.anchor_idx[c].tolist():
            _put_int(out, a)
    _put_int(out, model.num_cascades)
    for c in range(model.num_cascades):
        _put_int(out, model.num_feature_pixels)
        for dx, dy in model.deltas[c].tolist():
            _put_float(out, dx)
            _put_float(out, dy)
    return bytes(out)
