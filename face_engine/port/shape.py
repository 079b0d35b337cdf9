"""dlib's ``shape_predictor`` (the 5-point landmark cascade) in numpy, in dlib's arithmetic order.

Written from ``dlib/image_processing/shape_predictor.h``. For a face rectangle, starting from the
model's mean shape in the unit box, each cascade level

1. fits the similarity transform from the initial shape to the current one (only its 2×2 part is
   used, cast to float32);
2. places its feature pixels: ``M·delta + current[anchor]`` in float32, mapped into the image by
   the rectangle's unnormalising transform in double and rounded with ``floor(v + 0.5)``;
3. reads them as grey levels (``(r + g + b) / 3`` in integers for colour; 0 outside the image);
4. walks each tree (left when ``pixel[idx1] − pixel[idx2] > thresh``) and adds its leaf to the
   shape, tree after tree, in float32.

The parts are the final shape mapped into the image and rounded like the feature pixels.

Exactness, and why each detail is kept:

* a feature pixel one pixel off flips splits and moves landmarks by pixels at the next levels, so
  every float32 operation is done in dlib's order, and the 500 leaf additions of a level are
  sequential float32 additions (``np.add.accumulate`` or in-place adds; a pairwise ``sum``, as
  ``np.sum`` does, rounds differently);
* dlib builds the unnormalising transform with ``find_affine_transform``, a least-squares fit
  through its own SVD-based ``pinv`` (dlib-bin has no LAPACK). That pinv is off by an ulp or two
  from the exact inverse, so the transform is too (``right − left`` becomes 99.99999999999997):
  it decides every point that falls exactly on a half pixel. :data:`_UNIT_PINV` is dlib's pinv,
  computed by dlib's own C++ code (the same headers compiled with g++, printed with ``%a``);
  the tests check half-pixel cases against ``dlib.shape_predictor`` itself;
* the similarity transform is dlib's Umeyama fit; for 2-D point sets its scaled rotation has the
  closed form ``[[a, −b], [b, a]] / Σ|from − mean|²`` (a = Σ from·to, b = Σ from×to, centred),
  equal to dlib's SVD route to ~1e-16, far inside the float32 cast that follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from face_engine.port.shape_format import ShapePredictorModel, load_shape_predictor

__all__ = [
    "ShapePredictor",
    "check_image",
    "dlib_round",
    "similarity_m",
    "unnormalizing_tforms",
]

# dlib's pinv of [[0, 1, 1], [0, 0, 1], [1, 1, 1]] (the unit box corners (0,0), (1,0), (1,1) as
# homogeneous columns), bit for bit as dlib computes it (checked against dlib 20); the exact inverse is
# [[-1, 0, 1], [1, -1, 0], [0, 1, 0]].
_UNIT_PINV = np.array(
    [
        [float.fromhex(v) for v in row]
        for row in (
            ("-0x1.0000000000001p+0", "-0x1p-52", "0x1.0000000000001p+0"),
            ("0x1.ffffffffffffdp-1", "-0x1.ffffffffffffbp-1", "0x1.8p-53"),
            ("0x0p+0", "0x1.0000000000001p+0", "0x1.8p-54"),
        )
    ]
)


def check_image(image: np.ndarray) -> np.ndarray:
    """An 8-bit grey (H×W) or colour (H×W×3, or H×W×4 whose alpha is ignored) image.

    dlib's C++ predictor reads an RGBA pixel's intensity with its alpha set to 255, i.e. exactly
    as the RGB pixel; dlib's Python binding refuses RGBA images altogether.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise ValueError(f"expected an 8-bit grey, RGB or RGBA image, got {img.dtype} {img.shape}")
    return img


def dlib_round(v: np.ndarray) -> np.ndarray:
    """dlib's double → integer point conversion: ``floor(v + 0.5)`` (the addition rounds too)."""
    return np.floor(v + 0.5).astype(np.int64)


def unnormalizing_tforms(rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's ``unnormalizing_tform(rect)`` for N rectangles (left, top, right, bottom; inclusive).

    Returns m (N×2×2) and b (N×2), float64, as dlib's ``find_affine_transform`` computes them:
    ``Q · pinv(P)`` with Q the corners tl, tr, br (as float32 points), summed left to right.
    """
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    left, top, right, bottom = (r[:, i].astype(np.float32).astype(np.float64) for i in range(4))
    rows = ((left, right, right), (top, top, bottom))
    out = np.empty((len(r), 2, 3))
    for i, (q0, q1, q2) in enumerate(rows):
        for j in range(3):
            out[:, i, j] = (q0 * _UNIT_PINV[0, j] + q1 * _UNIT_PINV[1, j]) + q2 * _UNIT_PINV[2, j]
    return out[:, :, :2], out[:, :, 2]


def apply_tforms(m: np.ndarray, b: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m·p + b`` in double for float32 points (N×K): dlib's point_transform_affine, same order."""
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    out_x = (m[:, 0, 0, None] * x + m[:, 0, 1, None] * y) + b[:, 0, None]
    out_y = (m[:, 1, 0, None] * x + m[:, 1, 1, None] * y) + b[:, 1, None]
    return out_x, out_y


def _row_sums(v: np.ndarray) -> np.ndarray:
    """Sums along the last axis, left to right: the torch version adds in this order too."""
    acc = v[..., 0]
    for i in range(1, v.shape[-1]):
        acc = acc + v[..., i]
    return acc


def similarity_m(initial: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """float32 N×2×2: the scaled rotation of dlib's ``find_tform_between_shapes(initial, shape)``.

    ``initial`` is (2P,) and ``shapes`` N×2P float32 (x0, y0, x1, …); computed in double.
    """
    n = len(initial) // 2
    f = initial.astype(np.float64).reshape(n, 2).T  # 2×P: x row, y row
    df = f - (_row_sums(f) / n)[:, None]
    t = shapes.astype(np.float64).reshape(len(shapes), n, 2).transpose(2, 0, 1)  # 2×N×P
    dt = t - (_row_sums(t) / n)[..., None]
    s = _row_sums(df[0] * df[0] + df[1] * df[1])
    a, b = _row_sums(np.stack([df[0] * dt[0] + df[1] * dt[1], df[0] * dt[1] - df[1] * dt[0]]))
    out = np.empty((len(shapes), 2, 2), np.float32)
    out[:, 0, 0] = out[:, 1, 1] = a / s
    out[:, 1, 0] = b / s
    out[:, 0, 1] = -(b / s)
    return out


class _Pixels:
    """The images of a call, read at integer points as dlib's grey levels.

    Positions are computed for every face at once; the reads are one ``take`` per image and
    channel on the image's own memory (concatenating the images instead would copy them all,
    100 MB for a batch of 28 photos, for ~12k reads a face). Grey (H×W), RGB and RGBA may be mixed:
    a grey image is read as three equal channels (step 0), and (3v) // 3 = v.
    """

    def __init__(self, images: Sequence[np.ndarray], face_image: np.ndarray) -> None:
        imgs = [np.ascontiguousarray(check_image(im)) for im in images]
        self.flats = [im.reshape(-1) for im in imgs]
        self.count = len(imgs)
        if face_image.size and (face_image.min() < 0 or face_image.max() >= self.count):
            raise ValueError("image_index must name an image for every rectangle")
        heights = np.array([im.shape[0] for im in imgs], np.int64)
        widths = np.array([im.shape[1] for im in imgs], np.int64)
        strides = np.array([1 if im.ndim == 2 else im.shape[2] for im in imgs], np.int64)
        self.h, self.w = heights[face_image, None], widths[face_image, None]
        self.stride = strides[face_image, None]
        self.step = (self.stride > 1).astype(np.int64)
        order = np.argsort(face_image, kind="stable")
        used, starts = np.unique(face_image[order], return_index=True)
        self.groups: list[tuple[int, np.ndarray | slice]] = (
            [(int(used[0]), slice(None))]
            if len(used) == 1
            else [(int(i), rows) for i, rows in zip(used, np.split(order, starts[1:]), strict=True)]
        )

    def grey_at(self, xi: np.ndarray, yi: np.ndarray) -> np.ndarray:
        """dlib's intensity at integer (xi, yi) (N×F, row i in face i's image), float32; 0 off the image."""
        inside = (xi >= 0) & (yi >= 0) & (xi < self.w) & (yi < self.h)
        pos = np.where(inside, (yi * self.w + xi) * self.stride, 0)
        total = np.empty(pos.shape, np.int32)
        for image, rows in self.groups:
            flat, at, step = self.flats[image], pos[rows], self.step[rows]
            total[rows] = flat.take(at).astype(np.int32) + flat.take(at + step) + flat.take(at + 2 * step)
        return np.where(inside, total // 3, 0).astype(np.float32)


class ShapePredictor:
    """The cascade on the CPU: one face (``predict``) or the faces of several images at once."""

    # Below this many faces a level's leaf additions are one np.add.accumulate; from it on, a loop
    # of in-place additions over contiguous N×2P slabs (exactly the same sums, ~10× faster then).
    _LOOP_FROM = 16

    def __init__(self, model: ShapePredictorModel | None = None) -> None:
        self.model = model if model is not None else load_shape_predictor()
        m = self.model
        levels, trees, splits = m.split_idx1.shape
        # Flat per-level tables, indexed by tree·S + node and tree·L + leaf: np.take on 1-D tables
        # is several times faster than 2-D fancy indexing.
        self._idx1 = m.split_idx1.reshape(levels, trees * splits)
        self._idx2 = m.split_idx2.reshape(levels, trees * splits)
        self._thresh = m.split_thresh.reshape(levels, trees * splits)
        self._leaves = m.leaf_values.reshape(levels, trees * m.leaf_values.shape[2], m.leaf_values.shape[3])
        self._node_base = np.arange(trees, dtype=np.int64) * splits
        self._leaf_base = np.arange(trees, dtype=np.int64) * m.leaf_values.shape[2]

    @property
    def num_parts(self) -> int:
        return self.model.num_parts

    def predict(self, image: np.ndarray, rect: Sequence[int]) -> np.ndarray:
        """P×2 int64 (x, y) parts for one rectangle (left, top, right, bottom), like dlib's call."""
        parts: np.ndarray = self.predict_batch([image], np.asarray([rect]), np.zeros(1, np.int64))[0]
        return parts

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        rects: np.ndarray,
        image_index: np.ndarray | None = None,
        *,
        trace: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> np.ndarray:
        """N×P×2 int64 parts for N rectangles; face i lies in ``images[image_index[i]]``.

        ``trace``, when given, receives per level the feature pixels' image coordinates in double
        before rounding (N×F each for x and y), for checking how close they come to a half pixel.
        """
        parts, _ = self.run(images, rects, image_index, trace=trace)
        return parts

    def run(
        self,
        images: Sequence[np.ndarray],
        rects: np.ndarray,
        image_index: np.ndarray | None = None,
        *,
        trace: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(parts N×P×2 int64, the same before rounding N×P×2 float64)."""
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        index = np.zeros(len(rects), np.int64) if image_index is None else np.asarray(image_index, np.int64)
        if index.shape != (len(rects),):
            raise ValueError("image_index must name an image for every rectangle")
        pixels = _Pixels(images, index)
        model = self.model
        n, p = len(rects), model.num_parts
        m_img, b_img = unnormalizing_tforms(rects)
        shape = np.broadcast_to(model.initial_shape, (n, 2 * p)).copy()
        for level in range(model.num_cascades):
            m = similarity_m(model.initial_shape, shape)
            anchor, delta = model.anchor_idx[level], model.deltas[level]
            # float32 throughout, as dlib: (M·delta) then + the anchor part's current position.
            px = (m[:, 0, 0, None] * delta[:, 0] + m[:, 0, 1, None] * delta[:, 1]) + shape[:, 2 * anchor]
            py = (m[:, 1, 0, None] * delta[:, 0] + m[:, 1, 1, None] * delta[:, 1]) + shape[:, 2 * anchor + 1]
            x, y = apply_tforms(m_img, b_img, px, py)
            if trace is not None:
                trace.append((x, y))
            values = pixels.grey_at(dlib_round(x), dlib_round(y))
            # T×N×2P: tree t's leaf vector for every face, slab after slab.
            updates = self._leaves[level].take(self._walk(level, values).T, axis=0)
            shape = self._add_in_order(shape, updates)
        fx, fy = apply_tforms(m_img, b_img, shape[:, 0::2], shape[:, 1::2])
        exact = np.stack([fx, fy], axis=-1)
        return np.stack([dlib_round(fx), dlib_round(fy)], axis=-1), exact

    def _add_in_order(self, shape: np.ndarray, updates: np.ndarray) -> np.ndarray:
        """shape + updates[0] + updates[1] + … in float32, tree after tree like dlib's
        ``current_shape += leaf`` loop (a pairwise sum would round differently)."""
        if len(shape) < self._LOOP_FROM:
            summed: np.ndarray = np.add.accumulate(np.concatenate([shape[None], updates]), axis=0)[-1]
            return summed
        acc = shape.copy()
        for update in updates:
            acc += update
        return acc

    def _walk(self, level: int, values: np.ndarray) -> np.ndarray:
        """Row of each tree's leaf in the level's leaf table (N×T): one vectorised step per depth."""
        idx1, idx2, thresh = self._idx1[level], self._idx2[level], self._thresh[level]
        flat = values.reshape(-1)
        row = (np.arange(len(values), dtype=np.int64) * values.shape[1])[:, None]
        node = np.zeros((len(values), len(self._node_base)), np.int64)
        for _ in range(self.model.tree_depth):
            at = node + self._node_base
            diff = flat.take(row + idx1.take(at)) - flat.take(row + idx2.take(at))
            node = 2 * node + np.where(diff > thresh.take(at), 1, 2)
        leaves: np.ndarray = node - self.model.split_idx1.shape[2] + self._leaf_base
        return leaves
