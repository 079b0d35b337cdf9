"""Where the model weights live: the `face_recognition_models` package, found without importing it.

That package imports `pkg_resources`, which current setuptools no longer ships, so we locate its
folder with `importlib.util.find_spec` and never execute its `__init__`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The package face_recognition_models is not installed; it ships the model weights."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def weight_path(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise RuntimeError(f"Model weights {name} are missing from {path.parent}")
    return path
