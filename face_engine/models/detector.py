"""Face detector with the resolution policy: big images are detected on a downscaled copy."""

from __future__ import annotations

import numpy as np
from PIL import Image

from face_engine.models.base import Model
from face_engine.sessions.dlib_session import CnnDetectorSession, HogDetectorSession
from face_engine.types import Detection, DetectorKind, RGBImage

# dlib's MMOD-CNN fails on inputs under ~10 px a side (RuntimeError, and after a few of those at
# times heap corruption that kills the process). Neither detector can find a face that small
# (HOG's window is 80×80, MMOD's about 40×40), so such inputs are answered "no face" unseen.
MIN_DETECTION_SIDE = 20


def downscale(image: RGBImage, max_side: int) -> tuple[RGBImage, float]:
    """Return (image resized so its longer side ≤ max_side, factor original/resized)."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return small, width / size[0]


class Detector(Model[HogDetectorSession | CnnDetectorSession]):
    def __init__(self, kind: DetectorKind, *, max_side: int, upsample: int) -> None:
        super().__init__()
        self.kind = kind
        self.name = f"dlib-{kind.value}"
        self.max_side = max_side
        self.upsample = upsample

    def _create_session(self) -> HogDetectorSession | CnnDetectorSession:
        return HogDetectorSession() if self.kind is DetectorKind.HOG else CnnDetectorSession()

    def predict(self, image: RGBImage) -> list[Detection]:
        """Every face in ``image``, boxes in its own pixels, highest score first."""
        session = self.load()
        small, factor = downscale(image, self.max_side)
        if min(small.shape[:2]) * 2**self.upsample < MIN_DETECTION_SIDE:
            return []
        height, width = image.shape[:2]
        found = session.detect(small, self.upsample)
        detections = [
            Detection(d.box.scaled(factor).clipped(width, height), d.score) for d in found
        ]
        detections = [d for d in detections if d.box.area > 0]
        return sorted(detections, key=lambda d: d.score, reverse=True)
