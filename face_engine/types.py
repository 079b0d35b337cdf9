"""Typed boundary of the engine.

Coordinates: a ``BoundingBox`` is (top, right, bottom, left) in pixels of the *original* decoded
image (after EXIF rotation), ``right``/``bottom`` exclusive, the order face_recognition uses.
Landmarks are (x, y) pairs in the same pixel space.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

EMBEDDING_DIM = 128
EMBEDDING_BYTES = EMBEDDING_DIM * 4  # stored as little-endian float32, never pickled
Embedding = npt.NDArray[np.float32]
RGBImage = npt.NDArray[np.uint8]
# An image between decoding and the embedding: an RGBImage, or, on a torch runtime on a GPU, an
# H×W×3 uint8 tensor decoded there and left there (the detectors, landmarks and chips read it in
# place). Not a numpy type, so not checked as one.
Frame = Any


class DetectorKind(enum.StrEnum):
    HOG = "hog"
    CNN = "cnn"
    HOG_CNN = "hog+cnn"  # HOG; the CNN only for images where HOG finds no face


class Runtime(enum.StrEnum):
    AUTO = "auto"  # torch on CUDA when a GPU is there, else ONNX Runtime on the CPU
    ONNX = "onnx"
    TORCH = "torch"
    DLIB = "dlib"  # the reference runtime: dlib's own C++ networks


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Precision(enum.StrEnum):
    FP32 = "fp32"
    TF32 = "tf32"  # CUDA only
    FP16 = "fp16"  # CUDA only


@dataclass(frozen=True)
class BoundingBox:
    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def as_dict(self) -> dict[str, int]:
        return {"top": self.top, "right": self.right, "bottom": self.bottom, "left": self.left}

    def scaled(self, factor: float) -> BoundingBox:
        return BoundingBox(
            top=round(self.top * factor),
            right=round(self.right * factor),
            bottom=round(self.bottom * factor),
            left=round(self.left * factor),
        )

    def clipped(self, width: int, height: int) -> BoundingBox:
        return BoundingBox(
            top=max(0, min(self.top, height)),
            right=max(0, min(self.right, width)),
            bottom=max(0, min(self.bottom, height)),
            left=max(0, min(self.left, width)),
        )


@dataclass(frozen=True)
class Detection:
    """A detector hit before landmarks: box in original-image pixels and the detector's score."""

    box: BoundingBox
    score: float


@dataclass(frozen=True, eq=False)
class Face:
    box: BoundingBox
    score: float
    landmarks: tuple[tuple[float, float], ...]
    chip: RGBImage = field(repr=False)
    embedding: Embedding = field(repr=False)


@dataclass(frozen=True)
class ImageFaces:
    """Every face found in one image, largest first, with per-stage timings in milliseconds."""

    width: int
    height: int
    faces: tuple[Face, ...]
    timings_ms: dict[str, float]

    @property
    def largest(self) -> Face | None:
        return self.faces[0] if self.faces else None


class ImageError(ValueError):
    """An input that is not a usable image. ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Match:
    face_id: int
    person_id: int
    distance: float
