"""The ported 5-point shape predictor and face chip: numpy on the CPU, torch on a device.

Two shapes of API:

* per face, a drop-in for ``dlib_session.LandmarkSession`` (``predict(image, box)`` → shape,
  ``points(shape)``, ``chip(image, shape)``), where a shape is a :class:`PortShape` instead of
  ``dlib.full_object_detection``;
* per batch, ``align_many(images, boxes)``: every face of every image in one predictor call, which
  is where the port is faster than dlib's call per face. :class:`TorchLandmarkSession` also has
  ``align_tensors``, which leaves the chips on the device for ``TorchResNetSession.embed_tensor``,
  so only boxes, points and embeddings cross to the host.

Both give dlib's points and chips exactly (``tests/engine/test_port_shape.py``). The sessions hold
no scratch state: one instance may serve every thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from face_engine.port.chip import get_face_chip
from face_engine.port.shape import ShapePredictor
from face_engine.port.shape_format import ShapePredictorModel, load_shape_predictor
from face_engine.types import BoundingBox, RGBImage

if TYPE_CHECKING:  # torch is imported only by the torch session, when it is created
    import torch

CHIP_SIZE = 150
CHIP_PADDING = 0.25

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True, eq=False)
class PortShape:
    """What ``dlib.full_object_detection`` is to the dlib session: the box and its parts."""

    box: BoundingBox
    parts: np.ndarray  # P×2 int64 (x, y), dlib's rounded points


def dlib_rect(box: BoundingBox) -> tuple[int, int, int, int]:
    """Our box (right/bottom exclusive) → dlib's inclusive (left, top, right, bottom)."""
    return box.left, box.top, box.right - 1, box.bottom - 1


def _rects(boxes: Sequence[Sequence[BoundingBox]]) -> tuple[np.ndarray, np.ndarray]:
    """All boxes of a batch as N×4 dlib rectangles, and the image each lies in."""
    rects = [dlib_rect(b) for per_image in boxes for b in per_image]
    index = [i for i, per_image in enumerate(boxes) for _ in per_image]
    return np.asarray(rects, np.int64).reshape(-1, 4), np.asarray(index, np.int64)


def _split(items: Sequence[object], counts: Sequence[int]) -> list[list[object]]:
    out, start = [], 0
    for n in counts:
        out.append(list(items[start : start + n]))
        start += n
    return out


class PortLandmarkSession:
    """The numpy port on the CPU (no torch): ``LandmarkSession``'s interface plus ``align_many``."""

    def __init__(self, model: ShapePredictorModel | None = None) -> None:
        self._predictor = ShapePredictor(model if model is not None else load_shape_predictor())

    def predict(self, image: RGBImage, box: BoundingBox) -> PortShape:
        return PortShape(box, self._predictor.predict(image, dlib_rect(box)))

    def predict_many(self, images: Sequence[RGBImage], boxes: Sequence[Sequence[BoundingBox]]) -> list[list[PortShape]]:
        """Every box of every image, in one vectorised call; ``boxes[i]`` lie in ``images[i]``."""
        if len(images) != len(boxes):
            raise ValueError("one list of boxes per image")
        rects, index = _rects(boxes)
        parts = self._predictor.predict_batch(images, rects, index) if len(rects) else np.zeros((0, 5, 2), np.int64)
        flat = [b for per_image in boxes for b in per_image]
        shapes = [PortShape(b, p) for b, p in zip(flat, parts, strict=True)]
        return _split(shapes, [len(b) for b in boxes])  # type: ignore[return-value]

    @staticmethod
    def points(shape: PortShape) -> Points:
        return tuple((float(x), float(y)) for x, y in shape.parts.tolist())

    @staticmethod
    def chip(image: RGBImage, shape: PortShape) -> RGBImage:
        return get_face_chip(image, shape.parts, size=CHIP_SIZE, padding=CHIP_PADDING)

    def align_many(
        self, images: Sequence[RGBImage], boxes: Sequence[Sequence[BoundingBox]]
    ) -> list[tuple[list[Points], list[RGBImage]]]:
        """Per image: the points and the chip of each of its boxes (what the pipeline's ``_align`` returns)."""
        out = []
        for image, shapes in zip(images, self.predict_many(images, boxes), strict=True):
            out.append(([self.points(s) for s in shapes], [self.chip(image, s) for s in shapes]))
        return out


class TorchLandmarkSession:
    """Landmarks and chips computed on a torch device (CUDA, or the CPU) for whole batches."""

    def __init__(self, device: str = "cuda", model: ShapePredictorModel | None = None, max_batch: int = 256) -> None:
        from face_engine.port.chip_torch import TorchChipExtractor
        from face_engine.port.shape_torch import TorchShapePredictor

        self._predictor = TorchShapePredictor(model if model is not None else load_shape_predictor(), device)
        self._chips = TorchChipExtractor(device, CHIP_SIZE, CHIP_PADDING)
        self.device = self._predictor.device
        self.max_batch = max_batch  # faces per predictor call (memory: ~25 kB a face per level)

    def align_tensors(
        self, images: Sequence[RGBImage | torch.Tensor], boxes: Sequence[Sequence[BoundingBox]]
    ) -> tuple[list[list[Points]], torch.Tensor]:
        """(points per image, chips N×150×150×3 uint8 on the device, in box order): the images
        are uploaded once (tensors already there are used in place); only the points come back."""
        import torch

        from face_engine.port.shape_torch import ImageBatch

        if len(images) != len(boxes):
            raise ValueError("one list of boxes per image")
        rects, index = _rects(boxes)
        if not len(rects):
            return [[] for _ in boxes], torch.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=torch.uint8, device=self.device)
        batch = ImageBatch(images, self.device)
        parts = [self._predictor.predict(batch, rects[s : s + self.max_batch], index[s : s + self.max_batch])
                 for s in range(0, len(rects), self.max_batch)]
        host = torch.cat(parts).cpu().numpy()  # the chips' geometry is planned on the host anyway
        chips = self._chips.chips(batch, host, index)
        points = [tuple((float(x), float(y)) for x, y in p.tolist()) for p in host]
        return _split(points, [len(b) for b in boxes]), chips  # type: ignore[return-value]

    def align_many(
        self, images: Sequence[RGBImage | torch.Tensor], boxes: Sequence[Sequence[BoundingBox]]
    ) -> list[tuple[list[Points], list[RGBImage]]]:
        """Like ``PortLandmarkSession.align_many``, the chips copied back to the host."""
        points, chips = self.align_tensors(images, boxes)
        host = list(chips.cpu().numpy())
        per_image = _split(host, [len(b) for b in boxes])
        return [(p, c) for p, c in zip(points, per_image, strict=True)]  # type: ignore[misc]
