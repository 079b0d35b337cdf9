"""Face detector with the resolution policy: each image is detected at the scale that makes the
smallest face wanted (`FACE_MIN_SIZE`) as large as the detector's 80-px window, capped so the
detection image's longer side stays within `FACE_DETECTION_MAX_SIDE` (a 12 MP photo then costs
about what a 2 MP one does). Boxes are mapped back to the original image."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_engine.models.base import Model
from face_engine.runtime import hog_session, network_session
from face_engine.settings import EngineSettings
from face_engine.types import Detection, DetectorKind, Frame, RGBImage

WINDOW = 80  # both dlib detectors (HOG and MMOD CNN) scan an 80×80 window
# Below this the CNN's strided convolutions have nothing to convolve and dlib's HOG finds nothing.
MIN_DETECTABLE_SIDE = 16
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
# Decoded images are read-only arrays; torch warns when it wraps one, and ``resize`` only reads it.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


def detection_scale(height: int, width: int, *, min_face_size: int, max_side: int) -> tuple[float, int]:
    """(resize factor, dlib upsample count) to detect an image at.

    The total scale is min(80 / min_face_size, max_side / longer side). A total of 2 or more is
    done as one dlib upsampling (2×, as the dlib reference does) after a resize by total / 2.
    """
    total = min(WINDOW / min_face_size, max_side / max(height, width))
    if total >= 2.0:
        return total / 2.0, 1
    return total, 0


def resize(image: Frame, factor: float) -> Frame:
    """Pillow's BILINEAR resize (antialiased when shrinking) in torch's uint8 kernel, which was made
    to match it: on every core and 3× faster (a 720p photo to 2048×1152: 6.6 against 20.4 ms on 2
    cores). Its values are Pillow's or 1 away, on at most 0.14 % of them in
    tests/engine/test_detector_resize.py (fixed-point rounding)."""
    if math.isclose(factor, 1.0, rel_tol=1e-6):
        return image
    import torch
    from torch.nn.functional import interpolate

    height, width = image.shape[:2]
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    on_device = isinstance(image, torch.Tensor)
    with torch.inference_mode():
        frame = image if on_device else torch.from_numpy(np.ascontiguousarray(image))
        planes = frame.permute(2, 0, 1).unsqueeze(0)  # a view: channels-last planes
        if planes.device.type != "cpu":  # a frame decoded on the GPU stays there
            return resize_planes_float(planes, size)[0].permute(1, 2, 0)
        out = interpolate(planes, size=size, mode="bilinear", antialias=True, align_corners=False)
        resized = out[0].permute(1, 2, 0)
        return resized if on_device else np.ascontiguousarray(resized.numpy())


def resize_planes_float(planes: Any, size: tuple[int, int]) -> Any:
    """``resize`` of uint8 N×3×H×W planes on a GPU, where torch's antialiased kernel takes floats
    only. In float32, as Pillow does it: the rows first, rounded half up to 8 bits, then the
    columns. Rounding once at the end instead puts 7–17 % of the values 1 away from Pillow's; this
    way ≤ 0.02 % (tests/engine/test_detector_resize.py, run on the CPU)."""
    import torch
    from torch.nn.functional import interpolate

    def pass_(x: Any, to: tuple[int, int]) -> Any:
        out = interpolate(x, size=to, mode="bilinear", antialias=True, align_corners=False)
        return out.add_(0.5).floor_().clamp_(0, 255)

    wide = pass_(planes.float(), (planes.shape[2], size[1]))
    return pass_(wide, size).to(torch.uint8)



class _Sessions:
    def __init__(self, hog: Any | None, cnn: Any | None) -> None:
        self.hog, self.cnn = hog, cnn


class Detector(Model[_Sessions]):
    def __init__(self, settings: EngineSettings) -> None:
        super().__init__()
        self.settings = settings
        self.kind = settings.detector
        self.name = f"dlib-{self.kind.value}"

    def _create_session(self) -> _Sessions:
        hog = cnn = None
        if self.kind in (DetectorKind.HOG, DetectorKind.HOG_CNN):
            hog = hog_session(self.settings)
        if self.kind in (DetectorKind.CNN, DetectorKind.HOG_CNN):
            cnn = network_session(self.settings, "mmod")
        return _Sessions(hog, cnn)

    def predict(self, image: RGBImage) -> list[Detection]:
        """Every face in ``image``, boxes in its own pixels, highest score first."""
        return self.predict_many([image], map)[0]

    def predict_many(self, images: Sequence[RGBImage], map_fn: MapFn, *, min_face_size: int | None = None,
                     cnn_fallback: bool = True) -> list[list[Detection]]:
        """``predict`` for each image. Per-image work (resizing, HOG) goes through ``map_fn`` (a
        worker pool's map); the CNN gets every image that needs it in one ``detect_many`` call
        where its session has one (torch: batched on the GPU). ``min_face_size`` overrides the
        setting's (a camera has its own). Without ``cnn_fallback``, ``hog+cnn`` is HOG alone: a
        live stream's frames are mostly empty, and the fallback would run the CNN on each of them
        (265 ms on a 720p frame on the 2-core machine, against 51 ms for HOG)."""
        sessions = self.load()
        smallest = min_face_size or self.settings.min_face_size
        works: list[_Work] = list(map_fn(lambda image: self._work(image, smallest), images))
        found: list[list[Detection]] = [[] for _ in works]
        if sessions.hog is not None:
            found = self._hog_many(sessions.hog, works, map_fn)
        if sessions.cnn is not None and (sessions.hog is None or cnn_fallback):
            todo = [i for i, w in enumerate(works) if w.detectable and not found[i]]
            for upsample in {works[i].upsample for i in todo}:
                group = [i for i in todo if works[i].upsample == upsample]
                for i, dets in zip(group, self._cnn_many(sessions.cnn, [works[i].image for i in group], upsample,
                                                         map_fn), strict=True):
                    found[i] = dets
        return [w.to_original(dets) for w, dets in zip(works, found, strict=True)]

    @staticmethod
    def _hog_many(hog: Any, works: list[_Work], map_fn: MapFn) -> list[list[Detection]]:
        if getattr(hog, "backend", None) != "torch":  # per image on the worker pool (dlib releases the GIL)
            return list(map_fn(lambda w: hog.detect(w.image, w.upsample) if w.detectable else [], works))
        found: list[list[Detection]] = [[] for _ in works]  # on the device: images of one upsample together
        for upsample in {w.upsample for w in works if w.detectable}:
            group = [i for i, w in enumerate(works) if w.detectable and w.upsample == upsample]
            for i, dets in zip(group, hog.detect_many([works[i].image for i in group], upsample), strict=True):
                found[i] = dets
        return found

    @staticmethod
    def _cnn_many(cnn: Any, images: list[RGBImage], upsample: int, map_fn: MapFn) -> list[list[Detection]]:
        if hasattr(cnn, "detect_many"):
            return list(cnn.detect_many(images, upsample))
        return list(map_fn(lambda image: cnn.detect(image, upsample), images))

    def _work(self, image: RGBImage, min_face_size: int) -> _Work:
        height, width = image.shape[:2]
        factor, upsample = detection_scale(height, width, min_face_size=min_face_size,
                                           max_side=self.settings.detection_max_side)
        return _Work(resize(image, factor), upsample, width, height)


@dataclass
class _Work:
    """An image at its detection scale."""

    image: RGBImage
    upsample: int
    width: int  # of the original image
    height: int

    @property
    def detectable(self) -> bool:
        return bool(min(self.image.shape[:2]) >= MIN_DETECTABLE_SIDE)

    def to_original(self, found: list[Detection]) -> list[Detection]:
        back = self.image.shape[1] / self.width  # exact factor actually applied, after rounding the size
        detections = [Detection(d.box.scaled(1 / back).clipped(self.width, self.height), d.score) for d in found]
        return sorted((d for d in detections if d.box.area > 0), key=lambda d: d.score, reverse=True)
