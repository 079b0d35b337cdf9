"""The numpy half of dlib's CNN face detector: tiled pyramid input, decoding, NMS, upsampling.

dlib's ``cnn_face_detection_model_v1`` is three pieces, and only the middle one is a network:

1. **Input**: the image, normalised ``(pixel − mean) / 256``, laid out as dlib's *tiled pyramid*
   (``pyramid_down<6>`` levels, each 5/6 of the previous, packed into one tensor with padding).
   Levels are bilinear resizes computed on the float tensor; :func:`_resize_plane` reproduces
   dlib's float32/float64 mix (including its 4-wide SIMD column loop) so the input matches
   dlib's and the scores differ only by the network's float reassociation.
2. **Network**: any callable mapping the 1×3×H×W float32 pyramid to the 1×1×h×w score map —
   the torch module of :mod:`face_engine.port.mmod` or an ONNX Runtime session.
3. **Decoding** (:func:`decode`): positive cells → 80×80 windows → image coordinates through the
   pyramid level they fall on → sort by score → greedy NMS, with dlib's rounding at every step.

``upsample=n`` repeats dlib's ``pyramid_up`` (a 2× bilinear RGB resize, truncating) n times
before detecting and maps the boxes back, exactly as the Python binding does.

This module needs numpy only, so an ONNX Runtime deployment does not have to install torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from face_engine.port.dat_format import DatFormatError, NetworkFile

__all__ = [
    "Box",
    "Detection",
    "Detector",
    "DetectorConfig",
    "decode",
    "pyramid_layout",
    "pyramid_up",
    "tiled_pyramid",
]

Box = tuple[int, int, int, int]  # dlib rectangle: left, top, right, bottom, all inclusive
Detection = tuple[int, int, int, int, float]  # box and raw network score (dlib's confidence)
Runner = Callable[[np.ndarray], np.ndarray]

# pyramid_down<6>: each level is floor(5/6) of the previous; levels stop below 5 rows.
_PYR_N = 6
_MIN_LEVEL_ROWS = 5


# --- the tiled pyramid -----------------------------------------------------------------------


def _level_sizes(nr: int, nc: int) -> list[tuple[int, int]]:
    sizes = [(nr, nc)]
    rate = (_PYR_N - 1.0) / _PYR_N
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_ROWS:
            return sizes
        sizes.append((nr, nc))


def pyramid_layout(nr: int, nc: int, padding: int = 10, outer_padding: int = 11) -> tuple[list[Box], int, int]:
    """Where each pyramid level goes in the tiled image, and that image's size.

    Levels run down a first column until the rest fit beside the previous ones, then continue
    bottom-up in a second column against the right edge (dlib's
    ``compute_tiled_image_pyramid_details``). Returns ``(boxes, rows, cols)``.
    """
    if nr * nc == 0:
        return [], 0, 0
    sizes = _level_sizes(nr, nc)
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    h0, w0 = sizes[0]
    for h, w in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= total_height - h0:
            break
        height += h + padding
        prev_width = w
    height -= padding

    boxes: list[Box] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        boxes.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = boxes[0]
    while i < len(sizes):
        h, w = sizes[i]
        right, bottom = outer_padding + w0 - 1, y - 1
        box = (right - w + 1, bottom - h + 1, right, bottom)
        overlaps = not (box[2] < first[0] or box[0] > first[2] or box[3] < first[1] or box[1] > first[3])
        if overlaps:  # dlib drops the remaining levels rather than overlap the full-size image
            break
        boxes.append(box)
        y -= h + padding
        i += 1
    return boxes, height + 2 * outer_padding, w0 + 2 * outer_padding


class ArrayOps:
    """The few array operations the pyramid needs, so that one implementation of dlib's
    arithmetic runs on numpy arrays (here) and on torch tensors (:mod:`face_engine.port.torch_pyramid`).

    Tap positions and fractions are always computed with numpy (:func:`_row_taps`,
    :func:`_col_taps`); ``const`` hands them to the array library."""

    def const(self, a: np.ndarray) -> Any:
        return a

    def f32(self, a: Any) -> Any:
        return a.astype(np.float32)

    def f64(self, a: Any) -> Any:
        return a.astype(np.float64)

    def u8(self, a: Any) -> Any:
        """Truncation to uint8 (values are within 0..255)."""
        return a.astype(np.uint8)

    def empty(self, shape: tuple[int, ...], like: Any, dtype: str = "float32") -> Any:
        return np.empty(shape, dtype=dtype)


NUMPY = ArrayOps()


def _simd_columns(in_n: int, out_n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Column taps of dlib's 4-wide float32 SIMD resize loop: (left, frac) and where it stops.

    dlib advances four float32 x coordinates by float32(4·scale) per step (so they drift from
    the exact c·scale) and truncates them; the loop stops at the first group whose last right
    tap would leave the image, and the remaining columns use the double-precision path.
    """
    scale = (in_n - 1) / float(max(out_n - 1, 1))
    start = -4 * scale
    lanes = np.array([start, start + scale, start + 2 * scale, start + 3 * scale], dtype=np.float32)
    groups = (out_n + 3) // 4 + 1
    steps = np.full((groups + 1, 4), np.float32(4 * scale), dtype=np.float32)
    steps[0] = lanes
    xs = np.add.accumulate(steps, axis=0, dtype=np.float32)[1:]  # sequential float32 sums
    left = xs.astype(np.int32)  # truncation toward zero, like _mm_cvttps_epi32
    stop = np.nonzero(left[:, 3] + 1 >= in_n)[0]
    n_groups = int(stop[0]) if len(stop) else groups
    n_simd = min(4 * n_groups, out_n)
    left = left[:n_groups].reshape(-1)[:n_simd]
    frac = (xs[:n_groups].reshape(-1)[:n_simd] - left.astype(np.float32)).astype(np.float32)
    return left.astype(np.intp), frac, n_simd


@dataclass(frozen=True)
class _RowTaps:
    top: np.ndarray  # source rows above and below each output row
    bottom: np.ndarray
    tb: np.ndarray  # float64 fraction and its complement, as columns
    inv_tb: np.ndarray
    tb32: np.ndarray  # the same in float32, for the SIMD columns
    inv_tb32: np.ndarray


@dataclass(frozen=True)
class _ColTaps:
    n_simd: int  # columns done by the SIMD loop; the rest by the scalar tail
    left: np.ndarray
    right: np.ndarray
    lr: np.ndarray  # float32 fraction of the SIMD columns
    inv_lr: np.ndarray
    tail_left: np.ndarray
    tail_right: np.ndarray
    tail_frac: np.ndarray  # float64 fraction of the tail columns and its complement
    tail_inv: np.ndarray
    tail_frac32: np.ndarray  # the same in float32 (the float planes' tail)
    tail_inv32: np.ndarray


@functools.lru_cache(maxsize=256)
def _row_taps(in_h: int, out_h: int) -> _RowTaps:
    y_scale = (in_h - 1) / float(max(out_h - 1, 1))
    ys = np.add.accumulate(np.r_[-y_scale, np.full(out_h, y_scale)])[1:]  # double, sequential
    top = np.floor(ys).astype(np.intp)
    tb = ys - top
    return _RowTaps(top, np.minimum(top + 1, in_h - 1), tb[:, None], (1 - tb)[:, None],
                    tb.astype(np.float32)[:, None], (1 - tb).astype(np.float32)[:, None])


@functools.lru_cache(maxsize=256)
def _col_taps(in_w: int, out_w: int) -> _ColTaps:
    left, lr, n_simd = _simd_columns(in_w, out_w)
    # The scalar tail accumulates its source x step by step, in double precision.
    x_scale = (in_w - 1) / float(max(out_w - 1, 1))
    xs = np.add.accumulate(np.r_[-x_scale + n_simd * x_scale, np.full(out_w - n_simd, x_scale)])[1:]
    tail_left = np.floor(xs).astype(np.intp)
    frac = xs - tail_left
    frac32 = frac.astype(np.float32)
    return _ColTaps(n_simd, left, left + 1, lr, np.float32(1) - lr, tail_left, np.minimum(tail_left + 1, in_w - 1),
                    frac, 1 - frac, frac32, np.float32(1) - frac32)


def _resize_plane(src: Any, out_h: int, out_w: int, ops: ArrayOps = NUMPY) -> Any:
    """dlib's bilinear ``resize_image`` for float planes (align corners), bit-exact on x86."""
    in_h, in_w = src.shape[-2:]
    r, c = _row_taps(in_h, out_h), _col_taps(in_w, out_w)
    out = ops.empty((*src.shape[:-2], out_h, out_w), src)
    rt, rb = src[..., ops.const(r.top), :], src[..., ops.const(r.bottom), :]
    if c.n_simd:
        tbf, inv_tbf = ops.const(r.tb32), ops.const(r.inv_tb32)
        lr, inv_lr = ops.const(c.lr), ops.const(c.inv_lr)
        left, right = ops.const(c.left), ops.const(c.right)
        out[..., : c.n_simd] = ((inv_tbf * inv_lr) * rt[..., left] + (inv_tbf * lr) * rt[..., right]
                                + (tbf * inv_lr) * rb[..., left] + (tbf * lr) * rb[..., right])
    if c.n_simd < out_w:
        tl, tr = ops.const(c.tail_left), ops.const(c.tail_right)
        frac, inv = ops.const(c.tail_frac32), ops.const(c.tail_inv32)
        upper = inv * rt[..., tl] + frac * rt[..., tr]  # float32
        lower = inv * rb[..., tl] + frac * rb[..., tr]
        tb, inv_tb = ops.const(r.tb), ops.const(r.inv_tb)
        out[..., c.n_simd :] = ops.f32(inv_tb * ops.f64(upper) + tb * ops.f64(lower))
    return out


def tiled_pyramid(
    image: np.ndarray, mean_rgb: Sequence[float], padding: int = 10, outer_padding: int = 11
) -> tuple[np.ndarray, list[Box]]:
    """The network input for one image: 3×rows×cols float32 and the level boxes."""
    nr, nc = image.shape[:2]
    boxes, rows, cols = pyramid_layout(nr, nc, padding, outer_padding)
    data = np.zeros((3, rows, cols), dtype=np.float32)
    if not boxes:
        return data, boxes
    mean = np.asarray(mean_rgb, dtype=np.float32)[:, None, None]
    x0, y0, x1, y1 = boxes[0]
    data[:, y0 : y1 + 1, x0 : x1 + 1] = (image.transpose(2, 0, 1).astype(np.float32) - mean) / np.float32(256)
    for prev, box in zip(boxes, boxes[1:], strict=False):
        src = data[:, prev[1] : prev[3] + 1, prev[0] : prev[2] + 1]
        h, w = box[3] - box[1] + 1, box[2] - box[0] + 1
        data[:, box[1] : box[3] + 1, box[0] : box[2] + 1] = _resize_plane(src, h, w)
    return data, boxes


# --- decoding ------------------------------------------------------------------------------


def _lround(v: float) -> int:
    """C's lround (halves away from zero); dlib uses it to turn drectangles into rectangles."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def _nearest_box(boxes: list[Box], x: int, y: int) -> int:
    """dlib's nearest_rect: the first box containing the point, else the closest one."""
    best, best_dist = 0, math.inf
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x0 <= x <= x1 and y0 <= y <= y1:
            return i
        dx = min(max(x, x0), x1) - x
        dy = min(max(y, y0), y1) - y
        dist = math.sqrt(dx * dx + dy * dy)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def _area(b: Box) -> int:
    return max(0, b[2] - b[0] + 1) * max(0, b[3] - b[1] + 1)


def _nms_overlaps(a: Box, b: Box, iou_thresh: float, covered_thresh: float) -> bool:
    """dlib's test_box_overlap: intersection over the *bounding box of both*, or coverage."""
    inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou_thresh or inner / _area(a) > covered_thresh or inner / _area(b) > covered_thresh


def decode(
    scores: np.ndarray,
    boxes: list[Box],
    *,
    window: tuple[int, int] = (80, 80),
    cell_to_input: tuple[int, int] = (8, 14),
    threshold: float = 0.0,
    nms_iou: float = 0.3382761351109955,
    nms_covered: float = 1.0,
) -> list[Detection]:
    """Score map (rows×cols) → detections in image coordinates, best first, after NMS."""
    rows, cols = np.nonzero(scores > threshold)
    return decode_candidates(rows.tolist(), cols.tolist(), scores[rows, cols].tolist(), boxes, window=window,
                             cell_to_input=cell_to_input, nms_iou=nms_iou, nms_covered=nms_covered)


def decode_candidates(
    rows: Sequence[int],
    cols: Sequence[int],
    values: Sequence[float],
    boxes: list[Box],
    *,
    window: tuple[int, int] = (80, 80),
    cell_to_input: tuple[int, int] = (8, 14),
    nms_iou: float = 0.3382761351109955,
    nms_covered: float = 1.0,
) -> list[Detection]:
    """``decode`` from the cells over the threshold alone (row-major order, as ``np.nonzero`` gives
    them, with their scores): a GPU finds them in its score maps and sends back only these."""
    a, b = cell_to_input
    half_w, half_h = (window[0] - 1) / 2, (window[1] - 1) / 2
    ratio = _PYR_N / (_PYR_N - 1.0)
    cands: list[tuple[float, Box]] = []
    for r, c, value in zip(rows, cols, values, strict=True):
        px, py = float(a * c + b), float(a * r + b)
        x0, y0, x1, y1 = px - half_w, py - half_h, px + half_w, py + half_h
        level = _nearest_box(boxes, math.floor((x0 + x1) / 2 + 0.5), math.floor((y0 + y1) / 2 + 0.5))
        ox, oy = boxes[level][0], boxes[level][1]
        x0, y0, x1, y1 = x0 - ox, y0 - oy, x1 - ox, y1 - oy
        for _ in range(level):  # pyramid_down<6>::point_up, once per level
            x0, y0, x1, y1 = x0 * ratio + 0.3, y0 * ratio + 0.3, x1 * ratio + 0.3, y1 * ratio + 0.3
        box = (_lround(x0), _lround(y0), _lround(x1), _lround(y1))
        cands.append((float(value), box))
    # dlib sorts descending with std::sort; equal scores would be in unspecified order there.
    cands.sort(key=lambda item: -item[0])
    kept: list[Detection] = []
    for score, box in cands:
        if any(_nms_overlaps(k[:4], box, nms_iou, nms_covered) for k in kept):
            continue
        kept.append((*box, score))
    return kept


# --- pyramid_up (for upsample > 0) ----------------------------------------------------------


def pyramid_up(image: Any, ops: ArrayOps = NUMPY) -> Any:
    """dlib's ``pyramid_up`` with ``pyramid_down<2>`` on uint8 RGB (H×W×3, or planes …×3×H×W with
    torch ops): a (2H+1)×(2W+2) bilinear resize (align corners) with dlib's float32 SIMD columns,
    truncated to uint8."""
    planar = ops is not NUMPY
    src = ops.f32(image) if planar else image.transpose(2, 0, 1).astype(np.float32)
    nr, nc = src.shape[-2:]
    out_h, out_w = 2 * nr + 1, 2 * nc + 2  # lround of the up-mapped image rectangle
    r, c = _row_taps(nr, out_h), _col_taps(nc, out_w)
    out = ops.empty((*src.shape[:-2], out_h, out_w), src, "uint8")
    rt, rb = src[..., ops.const(r.top), :], src[..., ops.const(r.bottom), :]
    if c.n_simd:
        tbf, inv_tbf = ops.const(r.tb32), ops.const(r.inv_tb32)
        lr, inv_lr = ops.const(c.lr), ops.const(c.inv_lr)
        left, right = ops.const(c.left), ops.const(c.right)
        val = ((inv_tbf * inv_lr) * rt[..., left] + (inv_tbf * lr) * rt[..., right]
               + (tbf * inv_lr) * rb[..., left] + (tbf * lr) * rb[..., right])
        out[..., : c.n_simd] = ops.u8(val)
    if c.n_simd < out_w:
        # The RGB tail keeps its x fraction in double precision.
        tl, tr = ops.const(c.tail_left), ops.const(c.tail_right)
        frac, inv = ops.const(c.tail_frac), ops.const(c.tail_inv)
        tb, inv_tb = ops.const(r.tb), ops.const(r.inv_tb)
        rt64, rb64 = ops.f64(rt), ops.f64(rb)
        val = inv_tb * (inv * rt64[..., tl] + frac * rt64[..., tr]) + tb * (inv * rb64[..., tl] + frac * rb64[..., tr])
        out[..., c.n_simd :] = ops.u8(val)
    return out if planar else np.ascontiguousarray(out.transpose(1, 2, 0))


def _rect_down2(box: Box, levels: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    for _ in range(levels):  # pyramid_down<2>::point_down
        x0, y0, x1, y1 = x0 / 2.0 - 1.25, y0 / 2.0 - 0.75, x1 / 2.0 - 1.25, y1 / 2.0 - 0.75
    return (_lround(x0), _lround(y0), _lround(x1), _lround(y1))


# --- the detector ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorConfig:
    """Everything besides the network weights that the ``.dat`` file says about detection."""

    mean_rgb: tuple[float, float, float]
    padding: int
    outer_padding: int
    window: tuple[int, int]
    nms_iou: float
    nms_covered: float
    convs: tuple[tuple[int, int, int], ...]  # (kernel, stride, padding) of each conv, input first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DetectorConfig:
        return cls(
            **{
                **d,
                "mean_rgb": tuple(d["mean_rgb"]),
                "window": tuple(d["window"]),
                "convs": tuple(tuple(c) for c in d["convs"]),
            }
        )

    @property
    def cell_to_input(self) -> tuple[int, int]:
        """Score cell c ↦ pyramid pixel a·c + b: dlib's map_output_to_input through every conv,
        from the score map inwards (affine and relu layers keep coordinates)."""
        a, b = 1, 0
        for kernel, stride, pad in reversed(self.convs):
            a, b = a * stride, b * stride - pad + kernel // 2
        return a, b

    def score_map_size(self, n: int) -> int:
        """Score-map length for an input side of n pixels; 0 when some conv would get an input
        smaller than its kernel (dlib's im2col leaves its output uninitialised there)."""
        for kernel, stride, pad in self.convs:
            if n + 2 * pad < kernel:
                return 0
            n = (n + 2 * pad - kernel) // stride + 1
        return n

    @classmethod
    def from_network(cls, net: NetworkFile) -> DetectorConfig:
        loss, inp = net.loss.fields, net.input.fields
        if net.loss.tag != "loss_mmod_" or not net.input.tag.startswith("input_rgb_image_pyramid"):
            raise DatFormatError(f"not an MMOD detector: {net.loss.tag} over {net.input.tag}")
        if len(loss["windows"]) != 1 or loss["use_bbr"]:
            raise DatFormatError("only single-window MMOD detectors without box regression are supported")
        convs = tuple(
            (rec.fields["kernel"][0], rec.fields["stride"][0], rec.fields["padding"][0])
            for rec in net.layers
            if rec.kind == "con"
        )
        w, h, _ = loss["windows"][0]
        return cls(
            mean_rgb=tuple(inp["mean_rgb"]),
            padding=inp["padding"],
            outer_padding=inp["outer_padding"],
            window=(w, h),
            nms_iou=loss["nms_iou"],
            nms_covered=loss["nms_covered"],
            convs=convs,
        )


def checked_image(image: np.ndarray, upsample: int) -> np.ndarray:
    """An H×W×3 uint8 RGB image (gray becomes r = g = b, as dlib assigns it), or ValueError."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 RGB (or H×W gray) image, got {img.dtype} {img.shape}")
    if upsample < 0:
        raise ValueError("upsample must be ≥ 0")
    return img


class Detector:
    """``dlib.cnn_face_detection_model_v1`` reimplemented around a pluggable network ``runner``.

    ``runner`` receives the 1×3×H×W float32 pyramid and returns the 1×1×h×w score map (numpy).
    """

    def __init__(self, runner: Runner, config: DetectorConfig) -> None:
        self.runner = runner
        self.config = config

    def input_tensor(self, image: np.ndarray) -> tuple[np.ndarray, list[Box]]:
        """The 3×H×W network input for an RGB image, and where each pyramid level sits in it."""
        cfg = self.config
        return tiled_pyramid(image, cfg.mean_rgb, cfg.padding, cfg.outer_padding)

    def detect(self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[Detection]:
        """Faces as (left, top, right, bottom, score), best first, in dlib's inclusive rectangles;
        equal to ``cnn_face_detection_model_v1(path)(image, upsample)``."""
        img = checked_image(image, upsample)
        for _ in range(upsample):
            img = pyramid_up(img)
        data, boxes = self.input_tensor(img)
        if not self.runnable(data.shape[1:], boxes):
            return []
        return self.decode_scores(np.asarray(self.runner(data[None]))[0, 0], boxes, upsample, threshold)

    def runnable(self, size: Sequence[int], boxes: list[Box]) -> bool:
        """Whether a pyramid of ``size`` (rows, cols) gives the network a score map at all."""
        return bool(boxes) and min(self.config.score_map_size(n) for n in size) >= 1

    def decode_scores(self, scores: np.ndarray, boxes: list[Box], upsample: int,
                      threshold: float = 0.0) -> list[Detection]:
        """One image's score map → its detections, in the coordinates before ``upsample``."""
        rows, cols = np.nonzero(scores > threshold)
        return self.decode_candidates(rows.tolist(), cols.tolist(), scores[rows, cols].tolist(), boxes, upsample)

    def decode_candidates(self, rows: Sequence[int], cols: Sequence[int], values: Sequence[float],
                          boxes: list[Box], upsample: int) -> list[Detection]:
        """``decode_scores`` from the cells over the threshold (see :func:`decode_candidates`)."""
        cfg = self.config
        dets = decode_candidates(rows, cols, values, boxes, window=cfg.window, cell_to_input=cfg.cell_to_input,
                                 nms_iou=cfg.nms_iou, nms_covered=cfg.nms_covered)
        if upsample:
            dets = [(*_rect_down2(d[:4], upsample), d[4]) for d in dets]
        return dets

    __call__ = detect
