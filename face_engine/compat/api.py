"""``face_recognition.api`` (version 1.3) on the ported engine: ``from face_recognition import api``
becomes ``from face_engine.compat import api`` and nothing else changes.

Same names, arguments, defaults, return types and coordinates as the original: boxes are
``(top, right, bottom, left)`` tuples with dlib's inclusive right and bottom, trimmed to the image
the way the original trims them; landmarks are ``(x, y)`` integer pairs; encodings are 128-d
float64 numpy arrays. HOG detection and the landmark predictors are dlib's own; the CNN detector and
the ResNet are the engine's ports, equal to dlib's to float rounding (the same rectangles,
encodings within 1e-5) and running on a GPU through PyTorch when there is one. What differs, and
why: docs/compat.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import IO, Any

import dlib
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile

from face_engine.compat._models import MODELS, MmodRectangle, check_landmark_model, notice_large_model
from face_engine.models.jitter import jitter_chips
from face_engine.port.chip import get_face_chip
from face_engine.types import BoundingBox, Detection

__all__ = [
    "batch_face_locations",
    "compare_faces",
    "face_distance",
    "face_encodings",
    "face_landmarks",
    "face_locations",
    "load_image_file",
]

Css = tuple[int, int, int, int]  # (top, right, bottom, left)
Encoding = npt.NDArray[np.float64]
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib's compute_face_descriptor extracts

_truncated_lock = threading.Lock()


def load_image_file(file: str | os.PathLike[str] | IO[bytes], mode: str = "RGB") -> npt.NDArray[np.uint8]:
    """An image file (a path or a binary file object) as a numpy array, converted to ``mode``
    ("RGB": H×W×3, "L": H×W gray; an empty ``mode`` keeps the file's own)."""
    image: Image.Image = Image.open(file)
    try:
        image.load()
    except OSError:
        image = _load_truncated(file)
    if mode:
        image = image.convert(mode)
    return np.array(image)


def _load_truncated(file: str | os.PathLike[str] | IO[bytes]) -> Image.Image:
    """The original turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process when imported,
    so a cut-off file loads (its missing part grey); here it is on only while such a file is read
    again, so importing this module changes nothing for the engine's decoder, which refuses them."""
    if hasattr(file, "seek"):
        file.seek(0)
    with _truncated_lock:
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        try:
            image = Image.open(file)
            image.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image


# --- rectangles --------------------------------------------------------------------------------


def _rect_to_css(rect: Any) -> Css:
    """A dlib rectangle as (top, right, bottom, left)."""
    return rect.top(), rect.right(), rect.bottom(), rect.left()


def _css_to_rect(css: Sequence[int]) -> dlib.rectangle:
    """(top, right, bottom, left) as a dlib rectangle."""
    return dlib.rectangle(int(css[3]), int(css[0]), int(css[1]), int(css[2]))


def _trim_css_to_bounds(css: Sequence[int], image_shape: Sequence[int]) -> Css:
    """Clamp a box to an image of ``image_shape`` as the original does: the right and bottom
    edges to the width and height (not width − 1: the original's rounding, kept)."""
    return max(css[0], 0), min(css[1], image_shape[1]), min(css[2], image_shape[0]), max(css[3], 0)


def _mmod(detection: Detection) -> MmodRectangle:
    box: BoundingBox = detection.box  # exclusive right/bottom in the engine, inclusive in dlib
    return MmodRectangle(dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1), detection.score)


# --- detection ---------------------------------------------------------------------------------


def _raw_face_locations(img: npt.NDArray[np.uint8], number_of_times_to_upsample: int = 1,
                        model: str = "hog") -> Any:
    """dlib's own results: ``dlib.rectangles`` from HOG, or a list of ``MmodRectangle`` (``.rect``,
    ``.confidence``) from the CNN. As in the original, any model but "cnn" means HOG."""
    if model == "cnn":
        return [_mmod(d) for d in MODELS.cnn().detect(img, number_of_times_to_upsample)]
    return MODELS.hog()(img, number_of_times_to_upsample)


def face_locations(img: npt.NDArray[np.uint8], number_of_times_to_upsample: int = 1,
                   model: str = "hog") -> list[Css]:
    """Every face's box as (top, right, bottom, left), in the detector's order. ``model``: "hog"
    (dlib's HOG detector, on the CPU) or "cnn" (the ported MMOD network, on a GPU when there is
    one). Each upsampling doubles the image first, to find faces under ~80 px."""
    raw = _raw_face_locations(img, number_of_times_to_upsample, model)
    if model == "cnn":
        return [_trim_css_to_bounds(_rect_to_css(face.rect), img.shape) for face in raw]
    return [_trim_css_to_bounds(_rect_to_css(face), img.shape) for face in raw]


def _raw_face_locations_batched(images: Sequence[npt.NDArray[np.uint8]], number_of_times_to_upsample: int = 1,
                                batch_size: int = 128) -> list[list[MmodRectangle]]:
    """The CNN detector's results for each image; on a GPU the images of one size go through the
    network together, ``batch_size`` at a time. Unlike dlib, images may differ in size."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    images = list(images)
    session = MODELS.cnn()
    found: list[list[MmodRectangle]] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if hasattr(session, "detect_many"):
            detections = session.detect_many(chunk, number_of_times_to_upsample)
        else:
            detections = [session.detect(image, number_of_times_to_upsample) for image in chunk]
        found.extend([_mmod(d) for d in dets] for dets in detections)
    return found


def batch_face_locations(images: Sequence[npt.NDArray[np.uint8]], number_of_times_to_upsample: int = 1,
                         batch_size: int = 128) -> list[list[Css]]:
    """``face_locations(model="cnn")`` for many images at once: a list of box lists, one per
    image. Each image's boxes are trimmed to that image (the original trims every image's boxes
    to the first image's size; the same result wherever dlib accepts the batch: one size)."""
    images = list(images)
    raw = _raw_face_locations_batched(images, number_of_times_to_upsample, batch_size)
    return [[_trim_css_to_bounds(_rect_to_css(face.rect), image.shape) for face in faces]
            for image, faces in zip(images, raw, strict=True)]


# --- landmarks ---------------------------------------------------------------------------------


def _raw_face_landmarks(face_image: npt.NDArray[np.uint8], face_locations: Sequence[Sequence[int]] | None = None,
                        model: str = "large") -> list[Any]:
    """dlib ``full_object_detection`` shapes (``.parts()``, ``.num_parts``) for each face: 5
    points ("small") or 68 ("large"). Without ``face_locations``, faces are found by HOG with
    one upsampling."""
    check_landmark_model(model)
    if model == "large":
        notice_large_model(stacklevel=3)
    if face_locations is None:
        rects = list(_raw_face_locations(face_image))
    else:
        rects = [_css_to_rect(css) for css in face_locations]
    predictor = MODELS.shape_predictor(model)
    return [predictor(face_image, rect) for rect in rects]


def _shape_points(shape: Any) -> list[tuple[int, int]]:
    return [(p.x, p.y) for p in shape.parts()]


def _named_68(points: list[tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    """The 68 points of the iBUG layout grouped into features; the lips are closed loops, the
    inner lip points walked backwards as the original does."""
    return {
        "chin": points[0:17],
        "left_eyebrow": points[17:22],
        "right_eyebrow": points[22:27],
        "nose_bridge": points[27:31],
        "nose_tip": points[31:36],
        "left_eye": points[36:42],
        "right_eye": points[42:48],
        "top_lip": points[48:55] + [points[i] for i in (64, 63, 62, 61, 60)],
        "bottom_lip": points[54:60] + [points[i] for i in (48, 60, 67, 66, 65, 64)],
    }


def _named_5(points: list[tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    # The 5-point model's order: the image-left eye's two corners, the other eye's, the nose.
    return {"nose_tip": [points[4]], "left_eye": points[2:4], "right_eye": points[0:2]}


def face_landmarks(face_image: npt.NDArray[np.uint8], face_locations: Sequence[Sequence[int]] | None = None,
                   model: str = "large") -> list[dict[str, list[tuple[int, int]]]]:
    """Each face's features as lists of (x, y): chin, eyebrows, nose bridge and tip, eyes and
    lips from the 68-point model ("large", the original's default, non-commercial licence: a
    NonCommercialModelWarning once per process), or nose tip and eyes from the 5-point one
    ("small")."""
    check_landmark_model(model)
    if model == "large":
        notice_large_model(stacklevel=2)
    shapes = _raw_face_landmarks(face_image, face_locations, model)
    name = _named_68 if model == "large" else _named_5
    return [name(_shape_points(shape)) for shape in shapes]


# --- encodings ---------------------------------------------------------------------------------


def _check_rgb(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise TypeError(f"face encodings need an H×W×3 uint8 RGB image (load_image_file(..., mode='RGB')), "
                        f"got {dtype} {shape}")
    return image


def face_chip(image: npt.NDArray[np.uint8], shape: Any) -> npt.NDArray[np.uint8]:
    """The 150×150 chip dlib's ``compute_face_descriptor`` embeds: the engine's bit-identical port
    for 5 points; dlib's own for 68 (the port knows only the 5-point template)."""
    if shape.num_parts == 5:
        return get_face_chip(image, np.array(_shape_points(shape), dtype=np.float64), CHIP_SIZE, CHIP_PADDING)
    return np.asarray(dlib.get_face_chip(np.ascontiguousarray(image), shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def embed_chips(chips: Sequence[npt.NDArray[np.uint8]], num_jitters: int = 1) -> list[Encoding]:
    """One encoding per chip, every network input of the call in one batch (cut at the engine's
    FACE_ENGINE_MAX_BATCH_SIZE). ``num_jitters`` > 1: the mean over that many randomly jittered
    copies of the chip, like dlib's (dlib's own random perturbations differ, see docs/compat.md)."""
    if not len(chips):
        return []
    jitters = max(int(num_jitters), 1)
    if jitters == 1:
        inputs = list(chips)
    else:  # dlib averages jittered copies only, never the chip itself
        inputs = [copy for chip in chips for copy in jitter_chips(chip, jitters + 1)[1:]]
    session, step = MODELS.resnet(), MODELS.settings.max_batch_size
    vectors: list[np.ndarray] = []
    for start in range(0, len(inputs), step):
        vectors.extend(session.embed(inputs[start : start + step]))
    if jitters == 1:
        return [np.asarray(v, dtype=np.float64) for v in vectors]
    return [np.mean(np.stack(vectors[i : i + jitters]), axis=0).astype(np.float64)
            for i in range(0, len(vectors), jitters)]


def face_encodings(face_image: npt.NDArray[np.uint8], known_face_locations: Sequence[Sequence[int]] | None = None,
                   num_jitters: int = 1, model: str = "small") -> list[Encoding]:
    """The 128-d encoding of each face: at ``known_face_locations`` when given, else of every face
    HOG finds. ``model`` picks the landmarks the face is aligned with ("small": 5 points, the
    default; "large": 68, non-commercial). ``num_jitters`` > 1 averages jittered copies (slower,
    slightly more stable)."""
    check_landmark_model(model)
    if model == "large":
        notice_large_model(stacklevel=2)
    shapes = _raw_face_landmarks(face_image, known_face_locations, model)
    if not shapes:
        return []
    image = _check_rgb(face_image)
    return embed_chips([face_chip(image, shape) for shape in shapes], num_jitters)


# --- comparison --------------------------------------------------------------------------------


def face_distance(face_encodings: Sequence[npt.ArrayLike] | npt.NDArray[Any],
                  face_to_compare: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Euclidean distance from ``face_to_compare`` to each of ``face_encodings`` (a numpy array,
    empty when there are none). Under 0.6 usually means the same person."""
    if len(face_encodings) == 0:
        return np.empty(0)
    return np.asarray(np.linalg.norm(np.asarray(face_encodings) - face_to_compare, axis=1))


def compare_faces(known_face_encodings: Sequence[npt.ArrayLike] | npt.NDArray[Any],
                  face_encoding_to_check: npt.ArrayLike, tolerance: float = 0.6) -> list[np.bool_]:
    """For each known encoding, whether ``face_encoding_to_check`` is within ``tolerance`` of it
    (a list of numpy booleans; lower tolerance is stricter)."""
    return list(face_distance(known_face_encodings, face_encoding_to_check) <= tolerance)
