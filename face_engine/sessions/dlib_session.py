"""dlib runtime: HOG and MMOD-CNN detectors, 5-point shape predictor, face chips, ResNet."""

from __future__ import annotations

from collections.abc import Sequence

import dlib
import numpy as np

from face_engine.types import BoundingBox, Detection, Embedding, RGBImage
from face_engine.weights import LANDMARKS_5, MMOD_DETECTOR, RESNET, weight_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _box(rect: dlib.rectangle) -> BoundingBox:
    # dlib rectangles are inclusive; ours are exclusive on the right/bottom.
    return BoundingBox(
        top=rect.top(), right=rect.right() + 1, bottom=rect.bottom() + 1, left=rect.left()
    )


def _rect(box: BoundingBox) -> dlib.rectangle:
    return dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)


class HogDetectorSession:
    def __init__(self) -> None:
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, upsample, 0.0)
        return [Detection(_box(r), float(s)) for r, s in zip(rects, scores, strict=True)]


class CnnDetectorSession:
    def __init__(self) -> None:
        self._detector = dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        return [Detection(_box(d.rect), float(d.confidence)) for d in self._detector(image, upsample)]


class LandmarkSession:
    def __init__(self) -> None:
        self._predictor = dlib.shape_predictor(str(weight_path(LANDMARKS_5)))

    def predict(self, image: RGBImage, box: BoundingBox) -> dlib.full_object_detection:
        return self._predictor(image, _rect(box))

    @staticmethod
    def points(shape: dlib.full_object_detection) -> tuple[tuple[float, float], ...]:
        return tuple((float(p.x), float(p.y)) for p in shape.parts())

    @staticmethod
    def chip(image: RGBImage, shape: dlib.full_object_detection) -> RGBImage:
        return np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


class ResNetSession:
    def __init__(self) -> None:
        self._model = dlib.face_recognition_model_v1(str(weight_path(RESNET)))

    def embed(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        if not chips:
            return []
        descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return [np.asarray(d, dtype=np.float32) for d in descriptors]
