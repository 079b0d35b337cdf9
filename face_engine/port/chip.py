"""dlib's face chip extraction (``dlib.get_face_chip``) in numpy, bit-identical for 5-point shapes.

Why not ``cv2.warpAffine``: dlib (1) fits a similarity transform to a fixed 5-point template,
(2) when the face is much larger than the chip, first shrinks a crop of the image with its
``pyramid_down<2>`` (integer 5×5 binomial filter, flooring) so bilinear sampling does not alias,
and (3) samples bilinearly in double precision and *truncates* to uint8. Each of these changes
the embedding measurably if approximated, so every step below mirrors dlib's arithmetic order.

Only the 5-point landmark layout is supported (the 68-point model is not used in this project).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHIP_SIZE",
    "ChipDetails",
    "check_chips",
    "face_chip_details",
    "get_face_chip",
    "get_face_chips",
    "pyramid_down2",
]

CHIP_SIZE = 150  # the recognition network's input size

# dlib's mean 5-point face shape in [0, 1] chip units, in the 5-point predictor's part order
# (the outer and inner corner of one eye, then of the other, then the base of the nose).
TEMPLATE_5 = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ]
)

Rect = tuple[float, float, float, float]  # dlib drectangle: left, top, right, bottom (inclusive)


@dataclass(frozen=True)
class ChipDetails:
    """Where the chip lies in the image: a rectangle rotated by ``angle`` about its centre."""

    rect: Rect
    angle: float
    size: int


# --- small geometry helpers, each doing dlib's arithmetic in dlib's order --------------------


def _area(r: Rect) -> float:
    """dlib's drectangle area: sides counted inclusively (+1), empty rectangles have area 0."""
    left, top, right, bottom = r
    if left > right or top > bottom:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rect_down(r: Rect) -> Rect:
    """Map a rectangle one ``pyramid_down<2>`` level down: p → p/2 − (1.25, 0.75)."""
    left, top, right, bottom = r
    return (left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75)


def _center(r: Rect) -> tuple[float, float]:
    return ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0)


def _rotate(center: tuple[float, float], p: tuple[float, float], sin_a: float, cos_a: float) -> tuple[float, float]:
    x, y = p[0] - center[0], p[1] - center[1]
    return (cos_a * x - sin_a * y + center[0], sin_a * x + cos_a * y + center[1])


def _lround(v: float) -> int:
    """C's lround: halves away from zero (Python's round() would round halves to even)."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


# --- step 1: the similarity transform ---------------------------------------------------------


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity src → dst (Umeyama 1991, eqs. 34–43, with the reflection guard)."""
    n = len(src)
    mean_src, mean_dst = [0.0, 0.0], [0.0, 0.0]
    for (sx, sy), (dx, dy) in zip(src.tolist(), dst.tolist(), strict=True):
        mean_src = [mean_src[0] + sx, mean_src[1] + sy]
        mean_dst = [mean_dst[0] + dx, mean_dst[1] + dy]
    mean_src = [mean_src[0] / n, mean_src[1] / n]
    mean_dst = [mean_dst[0] / n, mean_dst[1] / n]
    sigma_src = 0.0
    cov = [[0.0, 0.0], [0.0, 0.0]]
    for (sx, sy), (dx, dy) in zip(src.tolist(), dst.tolist(), strict=True):
        fs = (sx - mean_src[0], sy - mean_src[1])
        fd = (dx - mean_dst[0], dy - mean_dst[1])
        sigma_src += fs[0] * fs[0] + fs[1] * fs[1]
        for i in range(2):
            for j in range(2):
                cov[i][j] += fd[i] * fs[j]
    sigma_src /= n
    cov_m = np.array(cov) / n
    u, d, vt = np.linalg.svd(cov_m)
    s = np.ones(2)
    det_cov = cov_m[0, 0] * cov_m[1, 1] - cov_m[0, 1] * cov_m[1, 0]
    if det_cov < 0 or (det_cov == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1 if d[1] < d[0] else 0] = -1.0
    r = (u * s) @ vt
    c = 1.0 if sigma_src == 0 else (1.0 / sigma_src) * float(d[0] * s[0] + d[1] * s[1])
    m = c * r
    mean_s = np.array(mean_src)
    t = np.array(mean_dst) - m @ mean_s
    return m, t


def face_chip_details(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for a 5×2 array of (x, y) landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected 5×2 landmarks (dlib's 5-point model), got {pts.shape}")
    if padding < 0 or size <= 0:
        raise ValueError("padding must be ≥ 0 and size > 0")
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    m, t = similarity_transform(template, pts)
    px, py = float(m[0, 0]), float(m[1, 0])  # the image of the unit x vector
    angle = math.atan2(py, px)
    scale = math.sqrt(px * px + py * py)
    half = size / 2.0
    cx = float(m[0, 0] * half + m[0, 1] * half + t[0])
    cy = float(m[1, 0] * half + m[1, 1] * half + t[1])
    w = (size * scale - 1) / 2
    return ChipDetails((cx - w, cy - w, cx + w, cy + w), angle, size)


# --- step 2: dlib's pyramid_down<2> -----------------------------------------------------------


def pyramid_down2(img: np.ndarray) -> np.ndarray:
    """One level of dlib's ``pyramid_down<2>`` on uint8 RGB: [1 4 6 4 1]² / 256, floored.

    Output is ((H−3)/2, (W−3)/2); row r / col c of the output is centred on input 2r+2 / 2c+2.
    dlib returns an empty image for inputs of 8 pixels or fewer on a side.
    """
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    oh, ow = (h - 3) // 2, (w - 3) // 2
    # uint16 like dlib: the largest sum, 16·16·255 = 65280, still fits, and it halves traffic.
    x = img.astype(np.uint16)
    tmp = x[:, 0 : 2 * ow : 2] + x[:, 4 : 4 + 2 * ow : 2]
    tmp += 4 * (x[:, 1 : 1 + 2 * ow : 2] + x[:, 3 : 3 + 2 * ow : 2])
    tmp += 6 * x[:, 2 : 2 + 2 * ow : 2]
    out = tmp[0 : 2 * oh : 2] + tmp[4 : 4 + 2 * oh : 2]
    out += 4 * (tmp[1 : 1 + 2 * oh : 2] + tmp[3 : 3 + 2 * oh : 2])
    out += 6 * tmp[2 : 2 + 2 * oh : 2]
    return (out >> 8).astype(np.uint8)


# --- step 3: bilinear sampling ------------------------------------------------------------------


def _sample_bilinear(src: np.ndarray, mx: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """dlib's transform_image + interpolate_bilinear: out(r, c) = src at m·(c, r) + b.

    Pixels whose 2×2 neighbourhood leaves the source are 0; values are computed in double in
    dlib's operation order and truncated, not rounded (the order matters for exactness).
    """
    c = np.arange(size, dtype=np.float64)[None, :]
    r = np.arange(size, dtype=np.float64)[:, None]
    x = (mx[0, 0] * c + mx[0, 1] * r + b[0]).ravel()
    y = (mx[1, 0] * c + mx[1, 1] * r + b[1]).ravel()
    left, top = np.floor(x), np.floor(y)
    h, w = src.shape[:2]
    inside = np.flatnonzero((left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h))
    out = np.zeros((3, size * size), np.uint8)
    if inside.size:
        x, y, left, top = x[inside], y[inside], left[inside], top[inside]
        lr, tb = x - left, y - top
        # Channel-planar copies make the four gathers and the arithmetic contiguous (~4× faster).
        planes = np.ascontiguousarray(np.moveaxis(src, 2, 0)).reshape(3, -1)
        base = top.astype(np.intp) * w + left.astype(np.intp)
        tl = np.take(planes, base, axis=1).astype(np.float64)
        tr = np.take(planes, base + 1, axis=1).astype(np.float64)
        bl = np.take(planes, base + w, axis=1).astype(np.float64)
        br = np.take(planes, base + w + 1, axis=1).astype(np.float64)
        inv_lr = 1 - lr
        val = (1 - tb) * (inv_lr * tl + lr * tr) + tb * (inv_lr * bl + lr * br)
        out[:, inside] = val.astype(np.uint8)  # C++ static_cast<unsigned char>: truncation
    return np.ascontiguousarray(out.reshape(3, size, size).transpose(1, 2, 0))


def _affine_from_3(
    src_pts: Sequence[tuple[float, float]], dst_pts: Sequence[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """The affine map sending chip corners (0,0), (s−1,0), (0,s−1) to three points.

    With these source points the least-squares solution is exact and closed form.
    """
    (x0, y0), (x1, _), (_, y2) = src_pts
    (u0, v0), (u1, v1), (u2, v2) = dst_pts
    sx, sy = x1 - x0, y2 - y0
    m = np.array([[(u1 - u0) / sx, (u2 - u0) / sy], [(v1 - v0) / sx, (v2 - v0) / sy]])
    return m, np.array([u0, v0])


@dataclass(frozen=True)
class ChipPlan:
    """Where one chip comes from: ``kind`` is "sample" (bilinear), "copy" (dlib's unrotated,
    unscaled fast path: a plain crop at ``box[:2]``) or "empty" (wholly outside the image)."""

    kind: str
    box: tuple[int, int, int, int]  # crop left, top, right, bottom (inclusive) in the image
    levels: int  # pyramid_down<2> levels applied to the crop
    m: tuple[float, float, float, float]  # chip (col, row) → source: m00, m01, m10, m11
    b: tuple[float, float]


def plan_chip(landmarks: np.ndarray, height: int, width: int, size: int = 150, padding: float = 0.25) -> ChipPlan:
    """Where the chip of these landmarks comes from, in an image of height × width."""
    return plan_details(face_chip_details(landmarks, size, padding), height, width)


def plan_details(det: ChipDetails, height: int, width: int) -> ChipPlan:
    """dlib's extraction up to the pixels (the crop, the pyramid levels, the affine map): the
    numpy ``_extract`` and the torch extractor (chip_torch.py) both follow it."""
    size = det.size
    chip_area = size * size
    grow = 2.0
    rect = _rect_down(det.rect)
    while _area(rect) > chip_area:
        rect = _rect_down(rect)
        grow = grow * 2 + 2
    sin_a, cos_a = math.sin(det.angle), math.cos(det.angle)
    cen = _center(det.rect)
    x0, y0, x1, y1 = det.rect
    corners = [_rotate(cen, p, sin_a, cos_a) for p in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    clipped = (max(grown[0], 0.0), max(grown[1], 0.0), min(grown[2], width - 1.0), min(grown[3], height - 1.0))
    cl, ct, cr, cb = (_lround(v) for v in clipped)
    none = (0.0, 0.0, 0.0, 0.0)
    if cl > cr or ct > cb:
        return ChipPlan("empty", (0, 0, -1, -1), 0, none, (0.0, 0.0))
    if det.angle == 0 and size == x1 - x0 + 1 and size == y1 - y0 + 1:
        return ChipPlan("copy", (_lround(x0), _lround(y0), _lround(x0) + size - 1, _lround(y0) + size - 1), 0,
                        none, (0.0, 0.0))
    rect = (x0 - cl, y0 - ct, x1 - cl, y1 - ct)
    levels = 0
    while _area(_rect_down(rect)) > chip_area:
        rect = _rect_down(rect)
        levels += 1
    cen = _center(rect)
    x0, y0, x1, y1 = rect
    dst = [_rotate(cen, p, sin_a, cos_a) for p in ((x0, y0), (x1, y0), (x0, y1))]
    m, off = _affine_from_3([(0.0, 0.0), (size - 1.0, 0.0), (0.0, size - 1.0)], dst)
    flat = m.ravel().tolist()
    return ChipPlan("sample", (cl, ct, cr, cb), levels, (flat[0], flat[1], flat[2], flat[3]),
                    (float(off[0]), float(off[1])))


def _extract(img: np.ndarray, det: ChipDetails) -> np.ndarray:
    size = det.size
    plan = plan_details(det, *img.shape[:2])
    if plan.kind == "empty":
        return np.zeros((size, size, 3), np.uint8)  # the chip lies wholly outside the image
    if plan.kind == "copy":
        return _copy_chip(img, det.rect, size)
    cl, ct, cr, cb = plan.box
    source = np.ascontiguousarray(img[ct : cb + 1, cl : cr + 1])
    for _ in range(plan.levels):
        source = pyramid_down2(source)
    matrix = np.array(plan.m, dtype=np.float64).reshape(2, 2)
    return _sample_bilinear(source, matrix, np.array(plan.b, dtype=np.float64), size)


def _copy_chip(img: np.ndarray, rect: Rect, size: int) -> np.ndarray:
    """dlib's fast path for an unrotated, unscaled chip: a plain crop, zero outside the image."""
    left, top = _lround(rect[0]), _lround(rect[1])
    out = np.zeros((size, size, 3), np.uint8)
    h, w = img.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, h), min(left + size, w)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = img[y0:y1, x0:x1]
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {img.dtype} {img.shape}")
    return img


def get_face_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """The aligned size×size×3 uint8 chip, identical to ``dlib.get_face_chip(img, shape, size,
    padding)`` for the shape whose 5 parts are ``landmarks`` (x, y per row)."""
    return _extract(_check_image(image), face_chip_details(landmarks, size, padding))


def get_face_chips(
    image: np.ndarray,
    landmarks: Sequence[np.ndarray],
    size: int = 150,
    padding: float = 0.25,
) -> np.ndarray:
    """N×size×size×3 chips, each extracted on its own exactly as :func:`get_face_chip` does.

    Note: ``dlib.get_face_chips`` (plural) shares one crop and pyramid between all faces, which
    can shift the pyramid's sampling grid and change pixels; dlib's ``compute_face_descriptor``
    for one face, like this function, does not.
    """
    img = _check_image(image)
    chips = [_extract(img, face_chip_details(pts, size, padding)) for pts in landmarks]
    return np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)


def check_chips(chips: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Validate and batch chips: uint8 N×size×size×3 (a single size×size×3 chip becomes N = 1)."""
    arr = np.asarray(chips)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.shape[1:] != (size, size, 3):
        raise ValueError(f"expected uint8 N×{size}×{size}×3 chips, got {arr.dtype} {arr.shape}")
    return arr
