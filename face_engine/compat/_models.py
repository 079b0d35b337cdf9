"""The models behind ``face_engine.compat``, loaded on first use, once per process.

The original loads all five of dlib's models when ``face_recognition.api`` is imported (about a
second and a half, even to call ``face_distance``); here each one loads when a function first
needs it. HOG detection and the shape predictors are dlib's own objects; the CNN detector and the
ResNet are the engine's ported networks on the runtime ``face_engine.runtime`` picks (ONNX Runtime
on the CPU, PyTorch on CUDA when a GPU is there), configured by the engine's environment variables.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import dlib

from face_engine.runtime import network_session
from face_engine.settings import EngineSettings
from face_engine.weights import LANDMARKS_5, models_dir, weight_path

# Only this package may name the 68-point model: the service never loads it (tests/compat checks).
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARK_MODELS = ("small", "large")


class NonCommercialModelWarning(UserWarning):
    """The 68-point landmark model is in use: its licence does not allow commercial use."""


LICENCE_NOTICE = (
    "face_engine.compat: model='large' uses dlib's 68-point landmark model "
    f"({LANDMARKS_68}), trained on the iBUG 300-W data set, whose licence excludes commercial "
    "use. Pass model='small' (the 5-point model, free for any use) to face_landmarks and "
    "face_encodings to avoid it; face_landmarks defaults to 'large' as the original does."
)
_notice_lock = threading.Lock()
_notice_given = False


def notice_large_model(stacklevel: int) -> None:
    """Warn, once per process, that the 68-point model is non-commercial."""
    global _notice_given
    with _notice_lock:
        if _notice_given:
            return
        _notice_given = True
    warnings.warn(LICENCE_NOTICE, NonCommercialModelWarning, stacklevel=stacklevel + 1)


def check_landmark_model(model: str) -> None:
    """The original treats any value but "small" as "large" in face_encodings; here a typo must
    not silently load the non-commercial model."""
    if model not in LANDMARK_MODELS:
        raise ValueError(f"Invalid landmarks model type {model!r}. Supported models are ['small', 'large'].")


def landmarks_68_path() -> Path:
    path = models_dir() / LANDMARKS_68
    if not path.is_file():
        raise FileNotFoundError(
            f"model='large' needs {LANDMARKS_68}, which is not in {path.parent} "
            "(face_recognition_models ships it); use model='small' for the 5-point model."
        )
    return path


class MmodRectangle:
    """One face from the CNN detector, as ``dlib.mmod_rectangle`` gives it (that class cannot be
    built from Python): ``rect``, a ``dlib.rectangle`` (inclusive corners), and ``confidence``,
    the detector's score."""

    __slots__ = ("rect", "confidence")

    def __init__(self, rect: dlib.rectangle, confidence: float) -> None:
        self.rect = rect
        self.confidence = confidence

    def __repr__(self) -> str:
        return f"MmodRectangle(rect={self.rect}, confidence={self.confidence!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MmodRectangle):
            return NotImplemented
        return self.rect == other.rect and self.confidence == other.confidence

    __hash__ = None  # type: ignore[assignment]  # mutable, like dlib's


class Models:
    """Lazily created sessions. dlib's detector and predictors keep scratch buffers and may not
    be shared between threads, so each thread gets its own (they are small); the networks'
    sessions are shared (ONNX Runtime and torch inference are thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._settings: EngineSettings | None = None
        self._sessions: dict[str, Any] = {}

    @property
    def settings(self) -> EngineSettings:
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = EngineSettings.from_env()
        return self._settings

    def configure(self, settings: EngineSettings) -> None:
        """Use these engine settings (runtime, device, precision, threads) from now on."""
        with self._lock:
            self._settings = settings
            self._sessions.clear()

    def hog(self) -> Any:
        detector = getattr(self._local, "hog", None)
        if detector is None:
            detector = self._local.hog = dlib.get_frontal_face_detector()
        return detector

    def shape_predictor(self, model: str) -> Any:
        """The 5-point (``small``) or 68-point (``large``) predictor of this thread."""
        check_landmark_model(model)
        predictors: dict[str, Any] = self._local.__dict__.setdefault("predictors", {})
        predictor = predictors.get(model)
        if predictor is None:
            path = weight_path(LANDMARKS_5) if model == "small" else landmarks_68_path()
            predictor = predictors[model] = dlib.shape_predictor(str(path))
        return predictor

    def cnn(self) -> Any:
        """The ported MMOD detector: ``detect(image, upsample)``, and ``detect_many`` on torch."""
        return self._session("mmod")

    def resnet(self) -> Any:
        """The ported ResNet: ``embed(chips) -> list of 128-d float32``."""
        return self._session("resnet")

    def _session(self, network: str) -> Any:
        session = self._sessions.get(network)
        if session is None:
            settings = self.settings
            with self._lock:
                session = self._sessions.get(network)
                if session is None:
                    session = self._sessions[network] = network_session(settings, network)  # type: ignore[arg-type]
        return session


MODELS = Models()
