"""dlib's HOG face detector in torch: the pyramid levels of a batch together, on any device.

The same detector as the numpy reference (:mod:`face_engine.port.hog.scan`), arranged for a
tensor library, and with the same results bit for bit on the CPU:

* the pyramid: dlib's uint8 resizes with its float32 arithmetic in its order, batched over the
  images of one size;
* fHOG: per level (batched), gradients, the RGB channel choice with dlib's SIMD / scalar tie
  rules, orientation and magnitude from lookup tables built by the reference code for every
  possible 8-bit gradient, and the bilinear votes, scattered into one canvas of histograms that
  holds every level (:mod:`.layout`) in dlib's order of additions (CPU ``scatter_add_`` is
  sequential); then the block normalisation of the whole canvas with the reference's float32
  operations (and a correctly rounded square root: torch's float32 CPU ``sqrt`` is not);
* the responses of the five detectors on every level: one convolution over the 31-plane
  feature canvas. dlib scans with the rank-reduced (separable) filters, so the kernels are those
  rank-1 terms summed, not the raw weights. On the CPU each output channel computes ``phases``
  neighbouring columns (stride ``phases``, kernel widened by ``phases − 1``): oneDNN pads 5
  output channels to 16 anyway, and this uses them, for about half the time;
* the convolution adds in another order than dlib, so every window within ``RESCORE_MARGIN`` of
  a threshold is rescored on the host from its features with dlib's exact sums
  (:func:`face_engine.port.hog.scan.window_responses`), then thresholded, boxed and NMS-ed by
  the reference's code. The detections are therefore dlib's exactly wherever the features are:
  on the CPU always; on CUDA ``scatter_add_`` adds in any order, which may move a feature by
  an ulp and a score by ~1e-7.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from face_engine.port.detector import _col_taps, _row_taps
from face_engine.port.hog.fhog import NUM_PLANES, orientation_table, simd_end
from face_engine.port.hog.layout import CanvasLayout, Level, canvas_layout
from face_engine.port.hog.model import HogModel
from face_engine.port.hog.pyramid import as_detector_image
from face_engine.port.hog.scan import (
    HogDetection,
    map_down,
    nms,
    simd_columns_end,
    window_rect,
    window_responses,
)

__all__ = ["TorchHogDetector", "effective_filters"]

_F32 = torch.float32
_GRAD = 255  # 8-bit gradients lie in [−255, 255]
_TABLE_SIDE = 2 * _GRAD + 1
RESCORE_MARGIN = 1e-3  # windows this close below a threshold are rescored exactly


def effective_filters(model: HogModel) -> np.ndarray:
    """The 10×10 kernels dlib effectively scans with: Σ_j col_j ⊗ row_j of the float32 rank-1
    terms (summed in double, then rounded), or the full filters for a non-separable bank.
    Shape: detectors × 31 × rows × cols, float32."""
    out = []
    for bank in model.banks:
        if not bank.separable:
            out.append(bank.filters)
            continue
        planes = np.zeros(bank.filters.shape, np.float64)
        for i in range(NUM_PLANES):
            for r, c in zip(bank.row_filters[i], bank.col_filters[i], strict=True):
                planes[i] += np.outer(c.astype(np.float64), r.astype(np.float64))
        out.append(planes.astype(np.float32))
    return np.stack(out)


def _phase_weights(filters: np.ndarray, phases: int) -> np.ndarray:
    """Kernels that produce ``phases`` neighbouring output columns per channel at stride ``phases``:
    channel (d, p) is filter d shifted right by p in a kernel ``phases − 1`` columns wider."""
    d, planes, rows, cols = filters.shape
    out = np.zeros((d, phases, planes, rows, cols + phases - 1), np.float32)
    for p in range(phases):
        out[:, p, :, :, p : p + cols] = filters
    return out.reshape(d * phases, planes, rows, cols + phases - 1)


@functools.lru_cache(maxsize=64)
def _axis_consts(visible: int, origin: int, stride: int, cell: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For a level's voting pixels 1 .. visible − 1 along one axis: (home cell × stride, as int64;
    the bilinear weights of the home cell and of the next one, float32 2 × n)."""
    p = np.arange(1, visible)
    home = (origin + (p + cell // 2) // cell) * stride
    frac = (((p - cell // 2) % cell + 0.5) / cell).astype(np.float32)  # dlib's vy0 / vx0
    weights = np.stack([np.float32(1) - frac, frac])
    return torch.from_numpy(home.astype(np.int64)).to(device), torch.from_numpy(weights).to(device)


# --- dlib's resize on tensors ------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _taps(in_h: int, in_w: int, out_h: int, out_w: int, device: torch.device) -> dict[str, torch.Tensor]:
    r, c = _row_taps(in_h, out_h), _col_taps(in_w, out_w)
    arrays = {
        "top": r.top, "bottom": r.bottom, "tb": r.tb, "inv_tb": r.inv_tb, "tb32": r.tb32, "inv_tb32": r.inv_tb32,
        "left": c.left, "right": c.right, "lr": c.lr, "inv_lr": c.inv_lr, "tail_left": c.tail_left,
        "tail_right": c.tail_right, "tail_frac": c.tail_frac, "tail_inv": c.tail_inv,
        "tail_frac32": c.tail_frac32, "tail_inv32": c.tail_inv32,
    }  # fmt: skip
    out = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}
    out["n_simd"] = torch.tensor(c.n_simd)
    return out


def resize_u8(images: torch.Tensor, out_h: int, out_w: int, gray: bool) -> torch.Tensor:
    """:func:`face_engine.port.hog.pyramid.resize_u8` on N×C×H×W uint8 tensors, bit-exact."""
    n, ch, in_h, in_w = images.shape
    out = torch.empty((n, ch, out_h, out_w), dtype=torch.uint8, device=images.device)
    if out_h <= 0 or out_w <= 0 or in_h == 0 or in_w == 0:
        return out.zero_()
    k = _taps(in_h, in_w, out_h, out_w, images.device)
    src = images.to(_F32)
    rt, rb = src.index_select(2, k["top"]), src.index_select(2, k["bottom"])
    n_simd = int(k["n_simd"])
    if n_simd:
        left, right = k["left"], k["right"]
        # (advanced indexing gathers along the last axis several times faster than index_select)
        val = ((k["inv_tb32"] * k["inv_lr"]) * rt[..., left] + (k["inv_tb32"] * k["lr"]) * rt[..., right]
               + (k["tb32"] * k["inv_lr"]) * rb[..., left] + (k["tb32"] * k["lr"]) * rb[..., right])
        out[..., :n_simd] = torch.floor(val.double() + 0.5).to(torch.uint8) if gray else val.to(torch.uint8)
    if n_simd < out_w:
        tl, tr = k["tail_left"], k["tail_right"]
        if gray:
            upper = k["tail_inv32"] * rt[..., tl] + k["tail_frac32"] * rt[..., tr]
            lower = k["tail_inv32"] * rb[..., tl] + k["tail_frac32"] * rb[..., tr]
            val = (k["inv_tb"] * upper.double() + k["tb"] * lower.double()).to(_F32)
        else:
            rt64, rb64 = rt.double(), rb.double()
            val = (k["inv_tb"] * (k["tail_inv"] * rt64[..., tl] + k["tail_frac"] * rt64[..., tr])
                   + k["tb"] * (k["tail_inv"] * rb64[..., tl] + k["tail_frac"] * rb64[..., tr]))
        out[..., n_simd:] = val.to(torch.uint8)
    return out


# --- fHOG: per-level votes, one canvas of histograms -----------------------------------------


def _level_votes(level: torch.Tensor, lv: Level, layout: CanvasLayout, ori_table: torch.Tensor,
                 mag_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A level's (N×C×rows×cols uint8) votes: canvas histogram bins and values, N × pixels·4,
    pixel by pixel in raster order (dlib's order of additions into each bin)."""
    c = layout.cell
    vr, vc = min(lv.cells_r * c, lv.rows) - 1, min(lv.cells_c * c, lv.cols) - 1
    tail = simd_end(vc) - 1  # first voting column (0-based) of dlib's scalar loop
    img = level[..., : vr + 1, : vc + 1].to(torch.int32)
    gx = img[..., 1:vr, 2:] - img[..., 1:vr, :-2]
    gy = img[..., 2:, 1:vc] - img[..., :-2, 1:vc]
    key = gy * _TABLE_SIDE + gx + (_GRAD * _TABLE_SIDE + _GRAD)
    if level.shape[1] == 3:
        # The strongest channel. On equal lengths dlib's SIMD columns keep the later channel
        # ((r > g ? r : g) > b ? … : b), its scalar columns the earlier one.
        sq = gx * gx + gy * gy
        r, g, b = sq[:, 0], sq[:, 1], sq[:, 2]
        keys = key
        rg = r > g
        key = torch.where(torch.where(rg, r, g) > b, torch.where(rg, keys[:, 0], keys[:, 1]), keys[:, 2])
        if tail < vc - 1:
            r, g, b, keys = r[..., tail:], g[..., tail:], b[..., tail:], keys[..., tail:]
            gr = g > r
            earlier = torch.where(gr, keys[:, 1], keys[:, 0])
            key[..., tail:] = torch.where(b > torch.where(gr, g, r), keys[:, 2], earlier)
    else:
        key = key[:, 0]
    ori, mag = ori_table[key], mag_table[key]
    rows, cols = layout.cells
    row_home, vy = _axis_consts(vr, lv.cy, cols * 18, c, level.device)
    col_home, vx = _axis_consts(vc, lv.cx, 18, c, level.device)
    idx = ori + row_home[:, None] + col_home[None, :]
    offsets = torch.tensor([0, 18, cols * 18, cols * 18 + 18], device=level.device)  # (ty, tx) = 00, 01, 10, 11
    idx = idx.unsqueeze(-1) + offsets
    # dlib's SIMD columns compute vy·(vx·v), its scalar columns (vy·vx)·v.
    along = [mag * vx[0], mag * vx[1]]
    votes = torch.stack([along[0] * vy[0, :, None], along[1] * vy[0, :, None],
                         along[0] * vy[1, :, None], along[1] * vy[1, :, None]], dim=-1)
    if tail < vc - 1:
        wy, wx = vy[:, :, None], vx[:, None, tail:]
        m = mag[..., tail:]
        votes[..., tail:, :] = torch.stack([(wy[0] * wx[0]) * m, (wy[0] * wx[1]) * m,
                                            (wy[1] * wx[0]) * m, (wy[1] * wx[1]) * m], dim=-1)
    n = level.shape[0]
    return idx.reshape(n, -1), votes.reshape(n, -1)


def fhog_canvas(levels: Sequence[torch.Tensor], layout: CanvasLayout, ori_table: torch.Tensor,
                mag_table: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """31-plane features of every canvas cell (N × rows × cols × 31), zero off the levels."""
    n = levels[0].shape[0]
    rows, cols = layout.cells
    size = rows * cols * 18
    # Every vote lands inside its level's box (the layout reserves dlib's border cells), so the
    # canvas holds them all.
    hist = torch.zeros((n, size), dtype=_F32, device=levels[0].device)
    for level, lv in zip(levels, layout.levels, strict=True):
        if lv.has_features:
            idx, votes = _level_votes(level, lv, layout, ori_table, mag_table)
            hist.scatter_add_(1, idx, votes)
    return _features(hist.view(n, rows, cols, 18), feature_mask)


def _features(hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`face_engine.port.hog.fhog._normalise` on the whole canvas, same float32 order."""
    norm = torch.zeros(hist.shape[:3], dtype=_F32, device=hist.device)
    for o in range(9):
        s = hist[..., o] + hist[..., o + 9]
        norm = norm + s * s
    n, rows, cols = norm.shape
    block = torch.ones((n, rows + 1, cols + 1), dtype=_F32, device=hist.device)  # 1: keeps masked cells finite
    block[:, 1:rows, 1:cols] = (((norm[:, :-1, :-1] + norm[:, :-1, 1:]) + norm[:, 1:, :-1]) + norm[:, 1:, 1:]) + 0.0001
    # lanes of cell P: blocks with top-left P, P − (1, 0), P − (0, 1), P − (1, 1)
    lanes = torch.stack([block[:, 1:, 1:], block[:, :-1, 1:], block[:, 1:, :-1], block[:, :-1, :-1]], dim=-1)
    nn = torch.sqrt(lanes.double()).float() * 0.2  # correctly rounded; torch's float32 CPU sqrt is not
    inv = torch.full_like(nn, 0.1).div_(nn)  # a true division: `0.1 / t` is 0.1 · (1/t) in torch
    signed = torch.minimum(hist.unsqueeze(-1), nn.unsqueeze(-2)) * inv.unsqueeze(-2)  # N×R×C×18×4
    t = torch.zeros((n, rows, cols, 4), dtype=_F32, device=hist.device)
    for o in range(0, 18, 3):
        t = t + ((signed[..., o, :] + signed[..., o + 1, :]) + signed[..., o + 2, :])
    unsigned = torch.minimum((hist[..., :9] + hist[..., 9:]).unsqueeze(-1), nn.unsqueeze(-2)) * inv.unsqueeze(-2)
    feats = torch.cat([
        (signed[..., 0] + signed[..., 1]) + (signed[..., 2] + signed[..., 3]),
        (unsigned[..., 0] + unsigned[..., 1]) + (unsigned[..., 2] + unsigned[..., 3]),
        t * float(np.float32(2 * 0.2357)),  # the float32 constant, as dlib rounds it
    ], dim=-1)  # fmt: skip
    return torch.where(mask, feats, 0.0)


# --- the detector --------------------------------------------------------------------------------


def _detector_frame(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``as_detector_image`` for arrays and device tensors alike: H×W uint8 gray or H×W×3 RGB."""
    if not isinstance(image, torch.Tensor):
        return torch.from_numpy(as_detector_image(image))
    if image.dtype != torch.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"Unsupported image type, must be 8bit gray or RGB image (got {image.dtype} "
                         f"{tuple(image.shape)})")
    return image


class TorchHogDetector:
    """``dlib.get_frontal_face_detector()`` on torch: ``detect`` / ``detect_batch`` like the numpy
    reference, on ``device`` (CPU or CUDA). ``phases``: output columns per convolution channel
    (default 3 on the CPU, 1 elsewhere)."""

    def __init__(self, model: HogModel | None = None, device: str | torch.device = "cpu",
                 phases: int | None = None) -> None:
        if model is None:
            from face_engine.port.hog.model import load_frontal_face_model

            model = load_frontal_face_model()
        self.model = model
        self.device = torch.device(device)
        self.phases = phases or (3 if self.device.type == "cpu" else 1)
        filters = effective_filters(model)
        self.filter_size = filters.shape[2:]
        self.weights = torch.from_numpy(_phase_weights(filters, self.phases)).to(self.device)
        if self.device.type == "cpu":
            self.weights = self.weights.contiguous(memory_format=torch.channels_last)
        self.thresholds = np.array([b.threshold for b in model.banks])
        table = orientation_table().reshape(-1)
        g = np.arange(-_GRAD, _GRAD + 1)
        mag = np.sqrt((g[:, None] ** 2 + g[None, :] ** 2).astype(np.float32)).reshape(-1)
        self.ori_table = torch.from_numpy(table.astype(np.int64)).to(self.device)
        self.mag_table = torch.from_numpy(mag).to(self.device)
        self._masks: dict[tuple[int, int], tuple[CanvasLayout, torch.Tensor, torch.Tensor]] = {}

    def canvas(self, nr: int, nc: int) -> tuple[CanvasLayout, torch.Tensor, torch.Tensor]:
        """The layout of an nr×nc image, its feature mask and window → level map on the device."""
        key = (nr, nc)
        hit = self._masks.get(key)
        if hit is None:
            if len(self._masks) >= 16:  # a few image sizes at a time
                self._masks.clear()
            layout = canvas_layout(nr, nc, self.model.scanner)
            hit = (layout, torch.from_numpy(layout.features[:, :, None]).to(self.device),
                   torch.from_numpy(layout.response_level >= 0).to(self.device))
            self._masks[key] = hit
        return hit

    @staticmethod
    def pyramid(images: torch.Tensor, layout: CanvasLayout) -> list[torch.Tensor]:
        """uint8 N×C×H×W images → every level dlib scans (the images first)."""
        levels = [images]
        for lv in layout.levels[1:]:
            levels.append(resize_u8(levels[-1], lv.rows, lv.cols, gray=images.shape[1] == 1))
        return levels

    def responses(self, features: torch.Tensor) -> torch.Tensor:
        """N × rows × cols × 31 features → N × detectors × (rows − 9) × (cols − 9) responses."""
        x = features.permute(0, 3, 1, 2)
        p = self.phases
        if p > 1:
            x = F.pad(x, (0, p))
        # fp32 on CUDA too: TF32 (cuDNN's default) would move responses by ~1e-3, past RESCORE_MARGIN
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            out = F.conv2d(x, self.weights, stride=(1, p))
        n, _, oh, ow = out.shape
        d = len(self.thresholds)
        out = out.view(n, d, p, oh, ow).permute(0, 1, 3, 4, 2).reshape(n, d, oh, ow * p)
        fr, fc = self.filter_size
        return out[..., : features.shape[2] - fc + 1]

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[np.ndarray | torch.Tensor], upsample: int = 0,
                     adjust_threshold: float = 0.0) -> list[list[HogDetection]]:
        """Detections for each image (gray or RGB uint8, any sizes; arrays, or tensors already on
        the device, used in place): images of one size and kind are processed together."""
        if upsample < 0:
            raise ValueError("upsample must be ≥ 0")
        checked = [_detector_frame(im) for im in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(checked):
            groups.setdefault(tuple(im.shape), []).append(i)
        out: list[list[HogDetection]] = [[] for _ in checked]
        for shape, members in groups.items():
            planes = torch.stack([checked[i].to(self.device) for i in members])
            planes = planes.unsqueeze(1) if len(shape) == 2 else planes.permute(0, 3, 1, 2)
            for i, dets in zip(members, self._detect_planes(planes, upsample, adjust_threshold), strict=True):
                out[i] = dets
        return out

    def detect(self, image: np.ndarray | torch.Tensor, upsample: int = 0,
               adjust_threshold: float = 0.0) -> list[HogDetection]:
        return self.detect_batch([image], upsample, adjust_threshold)[0]

    __call__ = detect

    def _detect_planes(self, planes: torch.Tensor, upsample: int, adjust: float) -> list[list[HogDetection]]:
        gray = planes.shape[1] == 1
        for _ in range(upsample):
            h, w = planes.shape[2:]
            if h and w:
                planes = resize_u8(planes, 2 * h + 1, 2 * w + 2, gray)
        n, _, nr, nc = planes.shape
        if nr == 0 or nc == 0:
            return [[] for _ in range(n)]
        layout, feature_mask, windows = self.canvas(nr, nc)
        if not layout.features.any():
            return [[] for _ in range(n)]
        feats = fhog_canvas(self.pyramid(planes, layout), layout, self.ori_table, self.mag_table, feature_mask)
        resp = self.responses(feats)
        oh, ow = resp.shape[2:]
        # Candidates: windows within RESCORE_MARGIN of a threshold; the convolution's float32
        # order moves responses by ~1e-5, so nothing outside can cross it.
        limit = torch.tensor(self.thresholds + adjust - RESCORE_MARGIN, dtype=_F32, device=resp.device)
        hits = (resp >= limit.view(1, -1, 1, 1)) & windows[:oh, :ow]
        where = hits.nonzero()
        fr, fc = self.filter_size
        span = torch.arange(fr, device=resp.device), torch.arange(fc, device=resp.device)
        patches = feats[where[:, 0, None, None], where[:, 2, None, None] + span[0][None, :, None],
                        where[:, 3, None, None] + span[1][None, None, :]]  # K × rows × cols × 31
        return self._decode(where.cpu().numpy(), patches.permute(0, 3, 1, 2).cpu().numpy(),
                            layout.response_level[:oh, :ow], layout, n, upsample, adjust)

    def _decode(self, where: np.ndarray, patches: np.ndarray, level_map: np.ndarray, layout: CanvasLayout,
                n: int, upsample: int, adjust: float) -> list[list[HogDetection]]:
        """Candidates → dlib's exact responses (rescored on the host from the exact features),
        thresholds, boxes, NMS."""
        fr, fc = self.filter_size
        keys: list[tuple[int, int, int, int, int]] = []  # image, detector, level, row, column (dlib's)
        simd = np.zeros(len(where), bool)
        for j, (_, d, oy, ox) in enumerate(where.tolist()):
            lv = layout.levels[level_map[oy, ox]]
            # canvas window top-left → dlib's response cell on the level's padded planes
            r = oy - (lv.cy + 2) + (fr - 1) // 2 + fr // 2
            c = ox - (lv.cx + 2) + (fc - 1) // 2 + fc // 2
            keys.append((int(where[j, 0]), d, lv.index, r, c))
            simd[j] = c < simd_columns_end(lv.hog_c, fc)
        exact = np.zeros(len(where), np.float32)
        for d, bank in enumerate(self.model.banks):
            mine = where[:, 1] == d
            exact[mine] = window_responses(bank, patches[mine], simd[mine])
        cands: list[list[tuple[tuple[int, int, int, int], HogDetection]]] = [[] for _ in range(n)]
        for (i, d, level, r, c), value in zip(keys, exact.astype(np.float64).tolist(), strict=True):
            thresh = float(self.thresholds[d])
            if value < thresh + adjust:
                continue
            rect = window_rect(r, c, self.model, level)
            cands[i].append(((d, level, r, c), HogDetection(*rect, value - thresh, d)))
        # dlib's scan order (detector, level, row, column), which equal scores keep through the sort;
        # NMS on the upsampled image's boxes, mapped down afterwards
        iou, covered = self.model.nms_iou, self.model.nms_covered
        return [map_down(nms([det for _, det in sorted(f, key=lambda item: item[0])], iou, covered), upsample)
                for f in cands]
