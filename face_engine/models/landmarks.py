from __future__ import annotations

import dlib

from face_engine.models.base import Model
from face_engine.sessions.dlib_session import LandmarkSession
from face_engine.types import BoundingBox, RGBImage


class LandmarkModel(Model[LandmarkSession]):
    """dlib's 5-point shape predictor (never the 68-point one: its licence is non-commercial)."""

    name = "dlib-shape-predictor-5"

    def _create_session(self) -> LandmarkSession:
        return LandmarkSession()

    def predict(self, image: RGBImage, box: BoundingBox) -> dlib.full_object_detection:
        return self.load().predict(image, box)

    @staticmethod
    def points(shape: dlib.full_object_detection) -> tuple[tuple[float, float], ...]:
        return LandmarkSession.points(shape)
