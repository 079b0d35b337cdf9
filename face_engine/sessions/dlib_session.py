"""dlib runtime: HOG and MMOD-CNN detectors, 5-point shape predictor, face chips, ResNet.

dlib's model objects keep scratch buffers and are not safe to call from two threads at once (a
concurrent call crashes the process). The small ones (HOG detector, shape predictor) get one
instance per thread, so a batch's images are detected in parallel (dlib releases the GIL); the
big networks serialise their calls with a lock.
"""

from __future__ import annotations

import threading
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
        self._local = threading.local()

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = dlib.get_frontal_face_detector()
        rects, scores, _ = detector.run(image, upsample, 0.0)
        return [Detection(_box(r), float(s)) for r, s in zip(rects, scores, strict=True)]


class CnnDetectorSession:
    def __init__(self) -> None:
        self._detector = dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))
        self._lock = threading.Lock()

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        with self._lock:
            found = self._detector(image, upsample)
        return [Detection(_box(d.rect), float(d.confidence)) for d in found]


class LandmarkSession:
    def __init__(self) -> None:
        self._path = str(weight_path(LANDMARKS_5))
        self._local = threading.local()
        self._local.predictor = dlib.shape_predictor(self._path)  # fail early if unreadable

    def predict(self, image: RGBImage, box: BoundingBox) -> dlib.full_object_detection:
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = dlib.shape_predictor(self._path)
        return predictor(image, _rect(box))

    @staticmethod
    def points(shape: dlib.full_object_detection) -> tuple[tuple[float, float], ...]:
        return tuple((float(p.x), float(p.y)) for p in shape.parts())

    @staticmethod
    def chip(image: RGBImage, shape: dlib.full_object_detection) -> RGBImage:
        return np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


class ResNetSession:
    def __init__(self) -> None:
        self._model = dlib.face_recognition_model_v1(str(weight_path(RESNET)))
        self._lock = threading.Lock()

    def embed(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        if not chips:
            return []
        with self._lock:
            descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return [np.asarray(d, dtype=np.float32) for d in descriptors]
