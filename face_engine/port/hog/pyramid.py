"""dlib's uint8 image resizes for the HOG detector: ``pyramid_down<6>`` levels and ``pyramid_up``.

Both are dlib's bilinear ``resize_image`` (align corners) on 8-bit images, which has two
specialisations with different rounding:

* **RGB** (``rgb_pixel``): a 4-wide float32 SIMD loop whose result is *truncated*, then a scalar
  double-precision tail for the last columns, also truncated;
* **grayscale** (``unsigned char``): the same SIMD loop but *rounded* (``value + 0.5``), and a tail
  that interpolates rows in float32 and columns in double, then truncates.

The tap positions and fractions (including dlib's drifting float32 x coordinates) come from
:mod:`face_engine.port.detector`, which reproduces the same loop for the CNN detector.

The pyramid's depth is not the number of levels the image sizes allow: dlib counts levels by
mapping the image *rectangle* down (``(p − 0.3)·5/6``, rounded) until it is narrower or lower
than the scanner's minimum layer size; the level images themselves are ``⌊5·n/6⌋`` on a side.
"""

from __future__ import annotations

import numpy as np

from face_engine.port.detector import _col_taps, _lround, _row_taps

__all__ = [
    "as_detector_image",
    "level_sizes",
    "num_levels",
    "pyramid_down6",
    "pyramid_up",
    "rect_down2",
    "rect_up6",
    "resize_u8",
]

Rect = tuple[int, int, int, int]  # dlib rectangle: left, top, right, bottom, inclusive


def as_detector_image(image: np.ndarray) -> np.ndarray:
    """An H×W uint8 gray or H×W×3 uint8 RGB image, as dlib's binding accepts; else ValueError.

    dlib's ``fhog_object_detector.run`` takes exactly these two kinds and raises on anything else
    (RGBA, floats, 16-bit); gray images go through dlib's grayscale code paths, which round
    differently from RGB, so they are *not* converted to RGB here.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"Unsupported image type, must be 8bit gray or RGB image (got {img.dtype} {img.shape})")
    return np.ascontiguousarray(img)


def resize_u8(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """dlib's ``resize_image`` (bilinear) of a uint8 gray (H×W) or RGB (H×W×3) image, bit-exact."""
    gray = image.ndim == 2
    in_h, in_w = image.shape[:2]
    if out_h <= 0 or out_w <= 0 or in_h == 0 or in_w == 0:
        return np.zeros((max(out_h, 0), max(out_w, 0), *image.shape[2:]), np.uint8)
    planes = (image[None] if gray else image.transpose(2, 0, 1)).astype(np.float32)
    r, c = _row_taps(in_h, out_h), _col_taps(in_w, out_w)
    rt, rb = planes[:, r.top, :], planes[:, r.bottom, :]
    out = np.empty((planes.shape[0], out_h, out_w), np.uint8)
    n = c.n_simd
    if n:
        val = ((r.inv_tb32 * c.inv_lr) * rt[..., c.left] + (r.inv_tb32 * c.lr) * rt[..., c.right]
               + (r.tb32 * c.inv_lr) * rb[..., c.left] + (r.tb32 * c.lr) * rb[..., c.right])
        # gray: static_cast<uchar>(value + 0.5) with a double 0.5; RGB: _mm_cvttps_epi32.
        out[..., :n] = np.floor(val.astype(np.float64) + 0.5) if gray else val
    if n < out_w:
        tl, tr = c.tail_left, c.tail_right
        if gray:  # rows in float32 (float lr_frac), the vertical blend in double, kept as float
            upper = c.tail_inv32 * rt[..., tl] + c.tail_frac32 * rt[..., tr]
            lower = c.tail_inv32 * rb[..., tl] + c.tail_frac32 * rb[..., tr]
            val = (r.inv_tb * upper.astype(np.float64) + r.tb * lower.astype(np.float64)).astype(np.float32)
        else:  # pixel_to_vector<double>: everything in double
            rt64, rb64 = rt.astype(np.float64), rb.astype(np.float64)
            val = (r.inv_tb * (c.tail_inv * rt64[..., tl] + c.tail_frac * rt64[..., tr])
                   + r.tb * (c.tail_inv * rb64[..., tl] + c.tail_frac * rb64[..., tr]))
        out[..., n:] = val  # truncation (values are within 0..255)
    return out[0] if gray else np.ascontiguousarray(out.transpose(1, 2, 0))


def pyramid_down6(image: np.ndarray) -> np.ndarray:
    """One ``pyramid_down<6>`` step: ⌊5/6⌋ of each side (C++ integer division), bilinear."""
    h, w = image.shape[:2]
    return resize_u8(image, 5 * h // 6, 5 * w // 6)


def pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_up`` with ``pyramid_down<2>``: a (2H+1)×(2W+2) bilinear resize
    (the image rectangle mapped up by p·2 + (2.5, 1.5), rounded)."""
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return image.copy()
    return resize_u8(image, 2 * h + 1, 2 * w + 2)


def _rect_down6(rect: Rect) -> Rect:
    # point_down: (p − 0.3)·(5/6); the drectangle back to a rectangle with lround.
    ratio = 5.0 / 6
    return tuple(_lround((v - 0.3) * ratio) for v in rect)  # type: ignore[return-value]


def num_levels(nr: int, nc: int, min_layer: tuple[int, int], max_levels: int) -> int:
    """``create_fhog_pyramid``'s level count for an nr×nc image."""
    rect: Rect = (0, 0, nc - 1, nr - 1)
    levels = 0
    while True:
        rect = _rect_down6(rect)
        levels += 1
        width = rect[2] - rect[0] + 1 if rect[2] >= rect[0] else 0
        height = rect[3] - rect[1] + 1 if rect[3] >= rect[1] else 0
        if not (width >= min_layer[0] and height >= min_layer[1] and levels < max_levels):
            return levels


def level_sizes(nr: int, nc: int, min_layer: tuple[int, int], max_levels: int) -> list[tuple[int, int]]:
    """(rows, cols) of every pyramid level dlib scans, the image first."""
    sizes = [(nr, nc)]
    for _ in range(num_levels(nr, nc, min_layer, max_levels) - 1):
        nr, nc = 5 * nr // 6, 5 * nc // 6
        sizes.append((nr, nc))
    return sizes


def rect_up6(rect: Rect, levels: int) -> Rect:
    """``pyramid_down<6>::rect_up(rect, levels)`` then lround: p·1.2 + 0.3, once per level."""
    ratio = 6 / (6 - 1.0)
    vals = [float(v) for v in rect]
    for _ in range(levels):
        vals = [v * ratio + 0.3 for v in vals]
    return tuple(_lround(v) for v in vals)  # type: ignore[return-value]


def rect_down2(rect: Rect, levels: int) -> Rect:
    """``pyramid_down<2>::rect_down(rect, levels)`` then lround: p/2 − (1.25, 0.75) per level."""
    x0, y0, x1, y1 = (float(v) for v in rect)
    for _ in range(levels):
        x0, y0, x1, y1 = x0 / 2.0 - 1.25, y0 / 2.0 - 0.75, x1 / 2.0 - 1.25, y1 / 2.0 - 0.75
    return (_lround(x0), _lround(y0), _lround(x1), _lround(y1))

