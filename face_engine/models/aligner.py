from __future__ import annotations

import dlib

from face_engine.sessions.dlib_session import LandmarkSession
from face_engine.types import RGBImage


class Aligner:
    """The 150×150 face chip (padding 0.25) the recognition network was trained on."""

    name = "dlib-face-chip-150"

    def predict(self, image: RGBImage, shape: dlib.full_object_detection) -> RGBImage:
        return LandmarkSession.chip(image, shape)
