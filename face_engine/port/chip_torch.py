"""``dlib.get_face_chip`` in torch, batched over the faces of several images, bit-identical to
:mod:`face_engine.port.chip` (numpy, itself bit-identical to dlib).

Split by what each part costs:

* the geometry of every chip (the similarity fit to the 5-point template, the crop box, how many
  ``pyramid_down<2>`` levels, the affine map) is a few dozen double operations per face on five
  points: it runs on the host with the numpy module's own functions, so it cannot drift from it;
* the pixel work runs on the device: crops of faces that need the pyramid are stacked (zero
  padded: a level's output pixel reads only its own crop's rows and columns, so padding never
  reaches a valid pixel) and shrunk level by level in integers; then all chips that end on the
  same level are sampled together, bilinear in float64 in the numpy module's operation order and
  truncated to uint8. Faces that need no pyramid are sampled straight from their image.

Floating point: every step is a separate elementwise torch op (no fused multiply-add), in float64
like dlib's double, so CPU and CUDA give the numpy module's values exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from face_engine.port.chip import ChipPlan, plan_chip  # the host geometry is the numpy module's own code
from face_engine.port.shape_torch import ImageBatch, ImageLike

__all__ = ["ChipPlan", "TorchChipExtractor", "plan_chip"]


def pyramid_down2(x: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2> on N×H×W×3 (any integer dtype): out ((H−3)/2, (W−3)/2), int32.

    Same integer sums as the numpy version ([1 4 6 4 1] in columns, then rows, ⌊Σ/256⌋).
    """
    h, w = x.shape[1:3]
    if h <= 8 or w <= 8:  # dlib's empty output; no face's valid region can be larger than the stack
        return torch.zeros((x.shape[0], 0, 0, 3), dtype=torch.int32, device=x.device)
    oh, ow = (h - 3) // 2, (w - 3) // 2
    x = x.to(torch.int32)
    tmp = x[:, :, 0 : 2 * ow : 2] + x[:, :, 4 : 4 + 2 * ow : 2]
    tmp = tmp + 4 * (x[:, :, 1 : 1 + 2 * ow : 2] + x[:, :, 3 : 3 + 2 * ow : 2]) + 6 * x[:, :, 2 : 2 + 2 * ow : 2]
    out = tmp[:, 0 : 2 * oh : 2] + tmp[:, 4 : 4 + 2 * oh : 2]
    out = out + 4 * (tmp[:, 1 : 1 + 2 * oh : 2] + tmp[:, 3 : 3 + 2 * oh : 2]) + 6 * tmp[:, 2 : 2 + 2 * oh : 2]
    return out >> 8


class TorchChipExtractor:
    """Aligned size×size RGB chips on ``device``, equal to ``chip.get_face_chip`` face by face."""

    def __init__(self, device: str | torch.device = "cpu", size: int = 150, padding: float = 0.25,
                 max_batch: int = 64) -> None:
        self.device = torch.device(device)
        self.size = size
        self.padding = padding
        self.max_batch = max_batch  # faces sampled per call: bounds the float64 temporaries
        grid = torch.arange(size, dtype=torch.float64, device=self.device)
        self._cols, self._rows = grid[None, None, :], grid[None, :, None]
        self._channels = torch.arange(3, device=self.device)

    @torch.inference_mode()
    def chips(
        self,
        images: Sequence[ImageLike] | ImageBatch,
        landmarks: np.ndarray | torch.Tensor,
        image_index: np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """N×size×size×3 uint8 chips on the device for N 5-point shapes (x, y per part)."""
        batch = images if isinstance(images, ImageBatch) else ImageBatch(images, self.device)
        pts = torch.as_tensor(landmarks).detach().to("cpu", torch.float64).numpy().reshape(-1, 5, 2)
        n = len(pts)
        index = np.zeros(n, np.int64) if image_index is None else np.asarray(torch.as_tensor(image_index).cpu())
        if index.shape != (n,) or (n and (index.min() < 0 or index.max() >= batch.count)):
            raise ValueError("image_index must name an image for every shape")
        for i in set(index.tolist()):
            if batch.sizes[i][2] != 3:
                raise ValueError(f"image {i}: chips need an RGB image (H×W×3), got {batch.sizes[i]}")
        plans = [plan_chip(p, batch.sizes[i][0], batch.sizes[i][1], self.size, self.padding)
                 for p, i in zip(pts, index, strict=True)]
        out = torch.zeros((n, self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        for j, (plan, i) in enumerate(zip(plans, index.tolist(), strict=True)):
            if plan.kind == "copy":
                self._copy(out[j], batch, i, plan.box)
        direct = [j for j, p in enumerate(plans) if p.kind == "sample" and p.levels == 0]
        for start in range(0, len(direct), self.max_batch):
            part = direct[start : start + self.max_batch]
            sources = [self._image_source(batch, int(index[j]), plans[j].box) for j in part]
            out[part] = self._sample(batch.pixels, sources, [plans[j] for j in part])
        shrunk = [j for j, p in enumerate(plans) if p.kind == "sample" and p.levels > 0]
        for part in self._similar_sizes(shrunk, plans):
            self._pyramid_chips(out, batch, part, [plans[j] for j in part], index)
        return out

    def _similar_sizes(self, faces: list[int], plans: list[ChipPlan]) -> list[list[int]]:
        """Faces in groups of crops within 2× of each other's area: a stack is padded to its
        largest crop, so one big face must not make every small one cost as much."""
        def area(j: int) -> int:
            box = plans[j].box
            return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)

        groups: list[list[int]] = []
        for j in sorted(faces, key=area, reverse=True):
            if groups and len(groups[-1]) < self.max_batch and area(groups[-1][0]) <= 2 * area(j):
                groups[-1].append(j)
            else:
                groups.append([j])
        return groups

    def _copy(self, dest: torch.Tensor, batch: ImageBatch, image: int, box: tuple[int, int, int, int]) -> None:
        h, w, _ = batch.sizes[image]
        left, top = box[0], box[1]
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + self.size, h), min(left + self.size, w)
        if y0 < y1 and x0 < x1:
            img = self._image(batch, image)
            dest[y0 - top : y1 - top, x0 - left : x1 - left] = img[y0:y1, x0:x1]

    @staticmethod
    def _image(batch: ImageBatch, image: int) -> torch.Tensor:
        h, w, c = batch.sizes[image]
        start = batch.host_offsets[image]
        return batch.pixels[start : start + h * w * c].view(h, w, c)

    @staticmethod
    def _image_source(batch: ImageBatch, image: int, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """(flat offset of the crop's top-left pixel, row stride, crop height, crop width)."""
        _, w, c = batch.sizes[image]
        cl, ct, cr, cb = box
        return batch.host_offsets[image] + (ct * w + cl) * c, w * c, cb - ct + 1, cr - cl + 1

    def _pyramid_chips(self, out: torch.Tensor, batch: ImageBatch, faces: list[int], plans: list[ChipPlan],
                       index: np.ndarray) -> None:
        """Crops stacked (zero padded), shrunk level by level; chips sampled per final level."""
        dims = [(p.box[3] - p.box[1] + 1, p.box[2] - p.box[0] + 1) for p in plans]
        stack = torch.zeros((len(faces), max(h for h, _ in dims), max(w for _, w in dims), 3),
                            dtype=torch.uint8, device=self.device)
        for k, (j, plan) in enumerate(zip(faces, plans, strict=True)):
            cl, ct, cr, cb = plan.box
            stack[k, : cb - ct + 1, : cr - cl + 1] = self._image(batch, int(index[j]))[ct : cb + 1, cl : cr + 1]
        alive = list(range(len(faces)))  # rows of `stack` still to shrink, in order
        level = 0
        while alive:
            level += 1
            # dlib returns an empty image for sides of 8 pixels or fewer; nothing is sampled from it.
            dims = [((h - 3) // 2, (w - 3) // 2) if h > 8 and w > 8 else (0, 0) for h, w in dims]
            stack = pyramid_down2(stack).to(torch.uint8)
            done = [k for k, f in enumerate(alive) if plans[f].levels == level]
            if done:
                rows = stack.shape[2] * 3
                sources = [(k * stack.shape[1] * rows, rows, *dims[k]) for k in done]
                out[[faces[alive[k]] for k in done]] = self._sample(
                    stack.reshape(-1), sources, [plans[alive[k]] for k in done]
                )
            keep = [k for k, f in enumerate(alive) if plans[f].levels > level]
            if not keep:
                break
            height, width = max(dims[k][0] for k in keep), max(dims[k][1] for k in keep)
            stack = stack[torch.as_tensor(keep, device=self.device), : max(height, 0), : max(width, 0)]
            dims = [dims[k] for k in keep]
            alive = [alive[k] for k in keep]

    def _sample(self, pixels: torch.Tensor, sources: list[tuple[int, int, int, int]],
                plans: list[ChipPlan]) -> torch.Tensor:
        """Bilinear chips from crops in a flat HWC uint8 buffer, as ``chip._sample_bilinear``."""
        dev = self.device
        src = torch.as_tensor(sources, dtype=torch.int64, device=dev)
        base, stride, height, width = (src[:, i, None, None] for i in range(4))
        m = torch.as_tensor([p.m for p in plans], dtype=torch.float64, device=dev)[:, :, None, None]
        b = torch.as_tensor([p.b for p in plans], dtype=torch.float64, device=dev)[:, :, None, None]
        x = (m[:, 0] * self._cols + m[:, 1] * self._rows) + b[:, 0]
        y = (m[:, 2] * self._cols + m[:, 3] * self._rows) + b[:, 1]
        left, top = torch.floor(x), torch.floor(y)
        inside = (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)  # compared in double
        li, ti = torch.where(inside, left, 0).to(torch.int64), torch.where(inside, top, 0).to(torch.int64)
        # Channels lead (3×n×S×S): the per-pixel weights then broadcast over contiguous blocks,
        # several times faster on the CPU than channels last; the arithmetic is the same.
        at = torch.where(inside, base + ti * stride + li * 3, 0) + self._channels[:, None, None, None]
        step = torch.where(inside, stride, 0)
        tl = torch.take(pixels, at).to(torch.float64)
        tr = torch.take(pixels, at + 3).to(torch.float64)
        bl = torch.take(pixels, at + step).to(torch.float64)
        br = torch.take(pixels, at + step + 3).to(torch.float64)
        lr, tb = x - left, y - top
        inv_lr = 1 - lr
        val = (1 - tb) * (inv_lr * tl + lr * tr) + tb * (inv_lr * bl + lr * br)
        chips = torch.where(inside, val, 0.0).to(torch.uint8)  # truncation, like dlib
        return chips.permute(1, 2, 3, 0)
