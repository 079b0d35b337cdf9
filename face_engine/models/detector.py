"""Face detector with the resolution policy: each image is detected at the scale that makes the
smallest face wanted (`FACE_MIN_SIZE`) as large as the detector's 80-px window, capped so the
detection image's longer side stays within `FACE_DETECTION_MAX_SIDE` (a 12 MP photo then costs
about what a 2 MP one does). Boxes are mapped back to the original image."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from face_engine.models.base import Model
from face_engine.runtime import network_session
from face_engine.settings import EngineSettings
from face_engine.types import Detection, DetectorKind, RGBImage

WINDOW = 80  # both dlib detectors (HOG and MMOD CNN) scan an 80×80 window
# Below this the CNN's strided convolutions have nothing to convolve and dlib's HOG finds nothing.
MIN_DETECTABLE_SIDE = 16


def detection_scale(height: int, width: int, *, min_face_size: int, max_side: int) -> tuple[float, int]:
    """(resize factor, dlib upsample count) to detect an image at.

    The total scale is min(80 / min_face_size, max_side / longer side). A total of 2 or more is
    done as one dlib upsampling (2×, as the dlib reference does) after a resize by total / 2.
    """
    total = min(WINDOW / min_face_size, max_side / max(height, width))
    if total >= 2.0:
        return total / 2.0, 1
    return total, 0


def resize(image: RGBImage, factor: float) -> RGBImage:
    if math.isclose(factor, 1.0, rel_tol=1e-6):
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


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
            from face_engine.sessions.dlib_session import HogDetectorSession

            hog = HogDetectorSession()
        if self.kind in (DetectorKind.CNN, DetectorKind.HOG_CNN):
            cnn = network_session(self.settings, "mmod")
        return _Sessions(hog, cnn)


    def predict(self, image: RGBImage) -> list[Detection]:
        """Every face in ``image``, boxes in its own pixels, highest score first."""
        sessions = self.load()
        height, width = image.shape[:2]
        factor, upsample = detection_scale(height, width, min_face_size=self.settings.min_face_size,
                                           max_side=self.settings.detection_max_side)
        work = resize(image, factor)
        if min(work.shape[:2]) < MIN_DETECTABLE_SIDE:
            return []
        found = sessions.hog.detect(work, upsample) if sessions.hog is not None else []
        if not found and sessions.cnn is not None:
            found = sessions.cnn.detect(work, upsample)
        back = work.shape[1] / width  # exact factor actually applied, after rounding the size
        detections = [Detection(d.box.scaled(1 / back).clipped(width, height), d.score) for d in found]
        detections = [d for d in detections if d.box.area > 0]
        return sorted(detections, key=lambda d: d.score, reverse=True)
