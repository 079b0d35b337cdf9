"""The CNN detector's input built with torch, for a batch of equal-size images on the network's
device (the GPU): dlib's ``pyramid_up`` and tiled pyramid, the same arithmetic as the numpy
version in :mod:`face_engine.port.detector`, so the tensors are equal to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from face_engine.port.detector import ArrayOps, Box, _resize_plane, pyramid_layout, pyramid_up

_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
_MAX_CONSTS = 4096


class TorchOps(ArrayOps):
    """:class:`ArrayOps` on one torch device; the numpy tap arrays are copied there once each."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._consts: dict[int, tuple[np.ndarray, torch.Tensor]] = {}

    def const(self, a: np.ndarray) -> torch.Tensor:
        # Tap arrays live in the lru caches of the numpy module, so their id is stable while they
        # live; the array is kept beside its tensor so the id cannot be reused by another one.
        # The cache is bounded like those caches (a few image sizes' taps).
        hit = self._consts.get(id(a))
        if hit is None or hit[0] is not a:
            if len(self._consts) >= _MAX_CONSTS:
                self._consts.clear()
            hit = (a, torch.from_numpy(np.ascontiguousarray(a)).to(self.device))
            self._consts[id(a)] = hit
        return hit[1]

    def f32(self, a: Any) -> Any:
        return a.to(torch.float32)

    def f64(self, a: Any) -> Any:
        return a.to(torch.float64)

    def u8(self, a: Any) -> Any:
        return a.to(torch.uint8)

    def empty(self, shape: tuple[int, ...], like: Any, dtype: str = "float32") -> Any:
        return torch.empty(shape, dtype=_DTYPES[dtype], device=self.device)


def upsample_planes(images: torch.Tensor, times: int, ops: TorchOps) -> torch.Tensor:
    """``pyramid_up`` ``times`` times on uint8 N×3×H×W planes."""
    for _ in range(times):
        images = pyramid_up(images, ops)
    return images


def tiled_pyramid_batch(
    images: torch.Tensor, mean_rgb: Sequence[float], padding: int, outer_padding: int, ops: TorchOps
) -> tuple[torch.Tensor, list[Box]]:
    """uint8 N×3×H×W planes → the N×3×rows×cols float32 network input, and the level boxes
    (the same for every image of the batch, as they all have one size)."""
    nr, nc = images.shape[-2:]
    boxes, rows, cols = pyramid_layout(nr, nc, padding, outer_padding)
    data = torch.zeros((images.shape[0], 3, rows, cols), dtype=torch.float32, device=images.device)
    if not boxes:
        return data, boxes
    mean = torch.tensor(mean_rgb, dtype=torch.float32, device=images.device)[:, None, None]
    x0, y0, x1, y1 = boxes[0]
    data[:, :, y0 : y1 + 1, x0 : x1 + 1] = (images.to(torch.float32) - mean) / 256.0
    for prev, box in zip(boxes, boxes[1:], strict=False):
        src = data[:, :, prev[1] : prev[3] + 1, prev[0] : prev[2] + 1]
        h, w = box[3] - box[1] + 1, box[2] - box[0] + 1
        data[:, :, box[1] : box[3] + 1, box[0] : box[2] + 1] = _resize_plane(src, h, w, ops)
    return data, boxes
