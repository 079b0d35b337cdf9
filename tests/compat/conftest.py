"""Fixtures for the face_recognition compatibility tests: our photos, and dlib's own models as the
reference each result is compared with (loaded once per session, like the compat models)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
MISC = DATA / "misc"


@pytest.fixture(scope="session")
def misc() -> Path:
    return MISC


@pytest.fixture(scope="session")
def photo() -> Callable[..., np.ndarray]:
    """photo(name, mode="RGB"): a photo of tests/data/misc as load_image_file gives it, read once."""
    from face_engine.compat import api

    @functools.cache
    def load(name: str, mode: str = "RGB") -> np.ndarray:
        return api.load_image_file(MISC / name, mode)

    return load


@dataclass
class DlibReference:
    """dlib's models as face_recognition 1.3 loads them."""

    hog: Any
    shape_5: Any
    resnet: Any
    _lazy: dict[str, Any] = field(default_factory=dict)

    @property
    def shape_68(self) -> Any:
        import dlib

        from face_engine.compat._models import landmarks_68_path

        if "68" not in self._lazy:
            self._lazy["68"] = dlib.shape_predictor(str(landmarks_68_path()))
        return self._lazy["68"]

    @property
    def cnn(self) -> Any:
        import dlib

        from face_engine.weights import MMOD_DETECTOR, weight_path

        if "cnn" not in self._lazy:
            self._lazy["cnn"] = dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))
        return self._lazy["cnn"]

    def encodings(self, image: np.ndarray, shapes: list[Any], jitters: int = 1) -> list[np.ndarray]:
        return [np.array(self.resnet.compute_face_descriptor(image, shape, jitters)) for shape in shapes]


@pytest.fixture(scope="session")
def dlib_reference() -> DlibReference:
    import dlib

    from face_engine.weights import LANDMARKS_5, RESNET, weight_path

    return DlibReference(
        hog=dlib.get_frontal_face_detector(),
        shape_5=dlib.shape_predictor(str(weight_path(LANDMARKS_5))),
        resnet=dlib.face_recognition_model_v1(str(weight_path(RESNET))),
    )


def css(rect: Any) -> tuple[int, int, int, int]:
    """A dlib rectangle as (top, right, bottom, left), untrimmed."""
    return rect.top(), rect.right(), rect.bottom(), rect.left()
