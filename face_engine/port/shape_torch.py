"""dlib's 5-point shape predictor in torch: every face of a batch (from any of its images) at once.

The same arithmetic as :mod:`face_engine.port.shape` (numpy), op for op, so the two give the same
points; see that module for why each detail matters. Per cascade level it is a fixed number of
tensor ops whatever the batch: feature pixels placed for all faces, read with one gather from the
images' flattened pixels, every tree walked one depth at a time (gathers and a comparison), the
leaves gathered, and the level's leaf vectors added tree after tree in float32.

That last sum must be sequential: a tree-order or pairwise sum rounds differently, which moves
later feature pixels across pixel boundaries. CUDA's ``cumsum`` along a non-innermost dimension
is such a sequential float32 loop per element; the CPU's accumulates in double, so on the CPU the
sum is numpy's ``add.accumulate`` on the tensor's memory (no copy). Which one a device gets is
decided once by comparing it with an explicit loop of additions (:func:`sequential_sum_for`).

Device-agnostic: the same code runs on CUDA and on the CPU (with float64 where dlib uses double;
every GPU torch supports has it). Only the parts come back to the host if the caller asks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch

from face_engine.port.shape import _UNIT_PINV
from face_engine.port.shape_format import ShapePredictorModel, load_shape_predictor

__all__ = ["ImageBatch", "TorchShapePredictor", "sequential_sum_for"]

ImageLike = np.ndarray | torch.Tensor
SequentialSum = Callable[[torch.Tensor], torch.Tensor]


# --- the sequential float32 sum --------------------------------------------------------------------


def _sum_by_loop(x: torch.Tensor) -> torch.Tensor:
    """Reference: x[:, 0] + x[:, 1] + … one rounded float32 addition at a time (slow, exact)."""
    acc = x[:, 0].clone()
    for i in range(1, x.shape[1]):
        acc = acc + x[:, i]
    return acc


def _sum_by_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(x, dim=1)[:, -1]


def _sum_by_numpy(x: torch.Tensor) -> torch.Tensor:
    """CPU tensors only: numpy's float32 additions, one term after the other."""
    terms = np.ascontiguousarray(x.numpy().transpose(1, 0, 2))  # K×N×D: contiguous slabs
    if x.shape[0] < 16:  # few rows: one accumulate call beats 500 Python-level additions
        return torch.from_numpy(np.add.accumulate(terms, axis=0)[-1].copy())
    acc = terms[0].copy()
    for term in terms[1:]:
        acc += term
    return torch.from_numpy(acc)


@lru_cache(maxsize=8)
def sequential_sum_for(device: torch.device) -> SequentialSum:
    """A fast ``x[:, 0] + x[:, 1] + …`` (N×K×D float32 → N×D) that rounds like the loop, for ``device``."""
    gen = torch.Generator().manual_seed(14)
    # Magnitudes spread over 4 decades: a sum that is not sequential in float32 gives itself away.
    probe = torch.randn(64, 501, 10, generator=gen) * torch.pow(10.0, torch.rand(64, 501, 1, generator=gen) * 4 - 3)
    probe = probe.to(device)
    expected = _sum_by_loop(probe)
    candidates: list[SequentialSum] = [_sum_by_cumsum]
    if device.type == "cpu":
        candidates.insert(0, _sum_by_numpy)
    for candidate in candidates:
        if torch.equal(candidate(probe), expected):
            return candidate
    return _sum_by_loop


# --- images --------------------------------------------------------------------------------------


class ImageBatch:
    """Several images' pixels in one flat uint8 tensor on the device, for one gather per read.

    Grey (H×W), RGB (H×W×3) and RGBA (H×W×4, alpha ignored as dlib's C++ does) may be mixed.
    One image is used in place; several are concatenated once (on a GPU a copy costs little).
    """

    def __init__(self, images: Sequence[ImageLike], device: torch.device) -> None:
        flats, sizes, strides = [], [], []
        for i, image in enumerate(images):
            with warnings.catch_warnings():
                # Decoded images are often read-only arrays; they are only read (and uploaded) here.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.as_tensor(image)
            if t.dtype != torch.uint8 or not (t.ndim == 2 or (t.ndim == 3 and t.shape[2] in (3, 4))):
                raise ValueError(f"image {i}: expected 8-bit grey, RGB or RGBA, got {t.dtype} {tuple(t.shape)}")
            t = t.to(device).contiguous()
            flats.append(t.reshape(-1))
            sizes.append((t.shape[0], t.shape[1]))
            strides.append(1 if t.ndim == 2 else t.shape[2])
        self.device = device
        self.count = len(flats)
        self.sizes: list[tuple[int, int, int]] = [(h, w, c) for (h, w), c in zip(sizes, strides, strict=True)]
        self.pixels = flats[0] if len(flats) == 1 else torch.cat(flats) if flats else torch.zeros(1, dtype=torch.uint8)
        self.host_offsets: list[int] = np.cumsum([0] + [f.numel() for f in flats[:-1]]).tolist() if flats else []
        self.offsets = torch.as_tensor(self.host_offsets, dtype=torch.int64, device=device)
        self.heights = torch.as_tensor([h for h, _ in sizes], dtype=torch.int64, device=device)
        self.widths = torch.as_tensor([w for _, w in sizes], dtype=torch.int64, device=device)
        self.pixel_stride = torch.as_tensor(strides, dtype=torch.int64, device=device)
        # A grey image is read as three equal "channels" (step 0): (3v) // 3 = v.
        self.channel_step = (self.pixel_stride > 1).to(torch.int64)

    def grey_at(self, face_image: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """dlib's pixel intensity at integer (xs, ys) (N×F) of face i's image; 0 off the image."""
        w, h = self.widths[face_image, None], self.heights[face_image, None]
        inside = (xs >= 0) & (ys >= 0) & (xs < w) & (ys < h)
        pos = (ys * w + xs) * self.pixel_stride[face_image, None] + self.offsets[face_image, None]
        pos = torch.where(inside, pos, torch.zeros_like(pos))
        step = self.channel_step[face_image, None]
        px = self.pixels
        total = torch.take(px, pos).to(torch.int32) + torch.take(px, pos + step) + torch.take(px, pos + 2 * step)
        return torch.where(inside, torch.div(total, 3, rounding_mode="floor"), 0).to(torch.float32)


# --- the predictor ---------------------------------------------------------------------------------


class TorchShapePredictor:
    """The cascade on ``device``; ``predict`` takes all faces of a batch of images."""

    def __init__(self, model: ShapePredictorModel | None = None, device: str | torch.device = "cpu") -> None:
        self.model = model if model is not None else load_shape_predictor()
        self.device = torch.device(device)
        m, dev = self.model, self.device
        self._initial = torch.as_tensor(m.initial_shape, device=dev)
        levels, trees, splits = m.split_idx1.shape
        # Flat per-level tables indexed by tree·S + node (and tree·L + leaf): 1-D gathers.
        self._idx1 = torch.as_tensor(m.split_idx1.reshape(levels, trees * splits), device=dev)
        self._idx2 = torch.as_tensor(m.split_idx2.reshape(levels, trees * splits), device=dev)
        self._thresh = torch.as_tensor(m.split_thresh.reshape(levels, trees * splits), device=dev)
        self._node_base = torch.arange(trees, device=dev) * splits
        leaves, dims = m.leaf_values.shape[2:]
        self._leaves = torch.as_tensor(m.leaf_values.reshape(levels, trees * leaves, dims), device=dev)
        self._anchor = torch.as_tensor(m.anchor_idx, device=dev)
        self._deltas = torch.as_tensor(m.deltas, device=dev)
        self._tree_base = torch.arange(trees, device=dev) * leaves  # tree t's leaves start at row t·L
        self._sum = sequential_sum_for(dev)

    @property
    def num_parts(self) -> int:
        return self.model.num_parts

    @torch.inference_mode()
    def predict(
        self,
        images: Sequence[ImageLike] | ImageBatch,
        rects: np.ndarray | torch.Tensor,
        image_index: np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """N×P×2 int64 parts on the device for rects (left, top, right, bottom; dlib's inclusive
        rectangles), face i in ``images[image_index[i]]`` (all in image 0 when not given)."""
        return self.run(images, rects, image_index)[0]

    @torch.inference_mode()
    def run(
        self,
        images: Sequence[ImageLike] | ImageBatch,
        rects: np.ndarray | torch.Tensor,
        image_index: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(parts N×P×2 int64, the parts before rounding N×P×2 float64), on the device."""
        dev = self.device
        batch = images if isinstance(images, ImageBatch) else ImageBatch(images, dev)
        r = torch.as_tensor(rects, device=dev).to(torch.int64).reshape(-1, 4)
        n = len(r)
        face_image = (
            torch.zeros(n, dtype=torch.int64, device=dev)
            if image_index is None
            else torch.as_tensor(image_index, device=dev).to(torch.int64).reshape(-1)
        )
        if face_image.shape != (n,) or (n and (int(face_image.min()) < 0 or int(face_image.max()) >= batch.count)):
            raise ValueError("image_index must name an image for every rectangle")
        m_img, b_img = _unnormalizing(r)
        shape = self._initial.expand(n, -1).clone()
        for level in range(self.model.num_cascades):
            m = _similarity(self._initial, shape)
            anchor, delta = self._anchor[level], self._deltas[level]
            px = (m[:, 0, 0, None] * delta[:, 0] + m[:, 0, 1, None] * delta[:, 1]) + shape[:, 2 * anchor]
            py = (m[:, 1, 0, None] * delta[:, 0] + m[:, 1, 1, None] * delta[:, 1]) + shape[:, 2 * anchor + 1]
            x, y = _apply(m_img, b_img, px, py)
            values = batch.grey_at(face_image, _round(x), _round(y))
            rows = self._walk(level, values)
            updates = self._leaves[level].index_select(0, rows.reshape(-1)).view(*rows.shape, -1)  # N×T×2P
            shape = self._sum(torch.cat([shape[:, None], updates], dim=1))
        fx, fy = _apply(m_img, b_img, shape[:, 0::2], shape[:, 1::2])
        return torch.stack([_round(fx), _round(fy)], dim=-1), torch.stack([fx, fy], dim=-1)

    def _walk(self, level: int, values: torch.Tensor) -> torch.Tensor:
        """Row of each tree's leaf in the level's leaf table (N×T): one step per tree depth."""
        idx1, idx2, thresh = self._idx1[level], self._idx2[level], self._thresh[level]
        flat = values.reshape(-1)
        row = (torch.arange(len(values), device=self.device) * values.shape[1])[:, None]
        node = torch.zeros((len(values), len(self._node_base)), dtype=torch.int64, device=self.device)
        for _ in range(self.model.tree_depth):
            at = node + self._node_base
            diff = torch.take(flat, row + torch.take(idx1, at)) - torch.take(flat, row + torch.take(idx2, at))
            node = 2 * node + torch.where(diff > torch.take(thresh, at), 1, 2)
        rows: torch.Tensor = node - self.model.split_idx1.shape[2] + self._tree_base
        return rows


def _round(v: torch.Tensor) -> torch.Tensor:
    return torch.floor(v + 0.5).to(torch.int64)


def _unnormalizing(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dlib's unnormalizing transforms (m N×2×2, b N×2, float64): see ``shape.unnormalizing_tforms``."""
    left, top, right, bottom = (r[:, i].to(torch.float32).to(torch.float64) for i in range(4))
    rows = ((left, right, right), (top, top, bottom))
    out = torch.empty((len(r), 2, 3), dtype=torch.float64, device=r.device)
    k = _UNIT_PINV.tolist()
    for i, (q0, q1, q2) in enumerate(rows):
        for j in range(3):
            out[:, i, j] = (q0 * k[0][j] + q1 * k[1][j]) + q2 * k[2][j]
    return out[:, :, :2], out[:, :, 2]


def _apply(m: torch.Tensor, b: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = xs.to(torch.float64), ys.to(torch.float64)
    out_x = (m[:, 0, 0, None] * x + m[:, 0, 1, None] * y) + b[:, 0, None]
    out_y = (m[:, 1, 0, None] * x + m[:, 1, 1, None] * y) + b[:, 1, None]
    return out_x, out_y


def _similarity(initial: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """float32 N×2×2 scaled rotation from ``initial`` to each shape: see ``shape.similarity_m``."""
    n = len(initial) // 2
    f = initial.to(torch.float64).reshape(n, 2).T
    df = f - (_seq(f) / n)[:, None]
    t = shapes.to(torch.float64).reshape(len(shapes), n, 2).permute(2, 0, 1)
    dt = t - (_seq(t) / n)[..., None]
    s = _seq(df[0] * df[0] + df[1] * df[1])
    a, b = _seq(torch.stack([df[0] * dt[0] + df[1] * dt[1], df[0] * dt[1] - df[1] * dt[0]]))
    out = torch.empty((len(shapes), 2, 2), dtype=torch.float32, device=shapes.device)
    out[:, 0, 0] = out[:, 1, 1] = (a / s).to(torch.float32)
    out[:, 1, 0] = (b / s).to(torch.float32)
    out[:, 0, 1] = (-(b / s)).to(torch.float32)
    return out


def _seq(v: torch.Tensor) -> torch.Tensor:
    """Sums along the last axis, left to right (a reduction kernel may add in another order)."""
    acc = v[..., 0]
    for i in range(1, v.shape[-1]):
        acc = acc + v[..., i]
    return acc
