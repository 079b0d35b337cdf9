"""The fast path: many images at once, with the original's results.

The same stages as the engine's batched pipeline (``face_engine.pipeline``): images are read and
HOG-detected on a pool of threads (Pillow and dlib's detector release the GIL), the CNN detector
takes the images of one size together (batched on a GPU), and every face of the batch goes through
the ResNet in one call. Unlike the service's pipeline, no image is resized for detection and faces
keep the detector's order, so each result equals what ``api.face_locations`` / ``api.face_encodings``
give for that image alone; the command lines use this module.

    from face_engine.compat import batch
    encodings = batch.encode_folder("known_people/")        # {path: [encoding, ...]}
    for path, found in batch.encode_files(paths):           # streamed, a chunk at a time
        ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from face_engine.compat import api
from face_engine.compat._models import MODELS, check_landmark_model, notice_large_model

__all__ = [
    "ImageFileError",
    "encode_files",
    "encode_folder",
    "face_encodings_batch",
    "face_locations_batch",
    "image_files_in_folder",
    "load_images",
    "locate_files",
]

T = TypeVar("T")
R = TypeVar("R")
MapFn = Callable[[Callable[[T], R], Iterable[T]], Iterable[R]]
Image8 = npt.NDArray[np.uint8]
Css = api.Css
Boxes = Sequence[Sequence[Sequence[int]]]  # one list of (top, right, bottom, left) per image
Encoding = api.Encoding

# The original command lines' filter: any name *containing* .jpg, .jpeg or .png (re.match from the
# start with a leading .*), kept as it is so a folder gives the same list of files.
IMAGE_NAME = re.compile(r".*\.(jpg|jpeg|png)", flags=re.IGNORECASE)
CHUNK_SIZE = 16  # images read, held and analysed together by encode_files / locate_files


class ImageFileError(ValueError):
    """A file that could not be read as an image."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def image_files_in_folder(folder: str | os.PathLike[str]) -> list[str]:
    """The image files of ``folder`` (by name, in directory order), as the original CLIs list them."""
    folder = os.fspath(folder)
    return [os.path.join(folder, name) for name in os.listdir(folder) if IMAGE_NAME.match(name)]


@contextmanager
def _mapper(workers: int) -> Iterator[Callable[..., list[Any]]]:
    count = workers if workers > 0 else os.cpu_count() or 1
    if count == 1:
        yield lambda fn, items: [fn(item) for item in items]
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="face-compat") as pool:
        yield lambda fn, items: list(pool.map(fn, items))


def _read(path: str, mode: str, max_side: int | None) -> Image8 | ImageFileError:
    try:
        image = api.load_image_file(path, mode)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; each becomes one clear line
        reason = "not an image file Pillow can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
        return ImageFileError(path, reason or type(exc).__name__)
    if max_side is not None and max(image.shape) > max_side:
        # The original face_recognition CLI shrinks giant photos so (Lanczos, aspect kept).
        thumb = Image.fromarray(image)
        thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        image = np.array(thumb)
    return image


def load_images(files: Iterable[str | os.PathLike[str]], mode: str = "RGB", *, workers: int = 0) -> list[Image8]:
    """``api.load_image_file`` of each file, read on ``workers`` threads (0: one per core);
    ImageFileError names the first file that is not a readable image."""
    with _mapper(workers) as run:
        images = run(lambda path: _read(os.fspath(path), mode, None), list(files))
    for image in images:
        if isinstance(image, ImageFileError):
            raise image
    return images


# --- detection ---------------------------------------------------------------------------------


def _hog_rects(run: MapFn[Image8, Any], images: Sequence[Image8], upsample: int) -> list[list[Any]]:
    return list(run(lambda image: list(MODELS.hog()(image, upsample)), images))


def _rects(run: MapFn[Image8, Any], images: Sequence[Image8], upsample: int, model: str,
           batch_size: int = 128) -> list[list[Any]]:
    """dlib rectangles of each image's faces, in the detector's order."""
    if model == "cnn":
        return [[face.rect for face in faces]
                for faces in api._raw_face_locations_batched(images, upsample, batch_size)]
    return _hog_rects(run, images, upsample)


def face_locations_batch(images: Sequence[Image8], number_of_times_to_upsample: int = 1, model: str = "hog", *,
                         workers: int = 0, batch_size: int = 128) -> list[list[Css]]:
    """``api.face_locations`` of each image: HOG on ``workers`` threads (0: one per core), the
    CNN batched by image size (``batch_size`` images per network call on a GPU)."""
    images = list(images)
    with _mapper(workers) as run:
        found = _rects(run, images, number_of_times_to_upsample, model, batch_size)
    return [[api._trim_css_to_bounds(api._rect_to_css(rect), image.shape) for rect in rects]
            for image, rects in zip(images, found, strict=True)]


# --- encodings ---------------------------------------------------------------------------------


def _encode(run: MapFn[Any, Any], images: Sequence[Image8], known: Boxes | None,
            num_jitters: int, model: str, upsample: int, detection_model: str) -> list[list[Encoding]]:
    if known is None:
        rects = _rects(run, images, upsample, detection_model)
    else:
        if len(known) != len(images):
            raise ValueError(f"known_face_locations has {len(known)} lists for {len(images)} images")
        rects = [[api._css_to_rect(css) for css in boxes] for boxes in known]

    def chips(item: tuple[Image8, list[Any]]) -> list[Image8]:
        image, image_rects = item
        if not image_rects:
            return []
        predictor = MODELS.shape_predictor(model)
        shapes = [predictor(image, rect) for rect in image_rects]
        rgb = api._check_rgb(image)
        return [api.face_chip(rgb, shape) for shape in shapes]

    per_image = list(run(chips, list(zip(images, rects, strict=True))))
    vectors = iter(api.embed_chips([chip for image_chips in per_image for chip in image_chips], num_jitters))
    return [[next(vectors) for _ in image_chips] for image_chips in per_image]


def face_encodings_batch(images: Sequence[Image8], known_face_locations: Boxes | None = None,
                         num_jitters: int = 1, model: str = "small", *, number_of_times_to_upsample: int = 1,
                         detection_model: str = "hog", workers: int = 0) -> list[list[Encoding]]:
    """``api.face_encodings`` of each image, every face of every image embedded in one network
    call. ``known_face_locations``: one list of boxes per image; otherwise faces are found with
    ``detection_model`` ("hog", as the original's face_encodings does, or "cnn") upsampled
    ``number_of_times_to_upsample`` times."""
    check_landmark_model(model)
    if model == "large":
        notice_large_model(stacklevel=2)
    with _mapper(workers) as run:
        return _encode(run, list(images), known_face_locations, num_jitters, model,
                       number_of_times_to_upsample, detection_model)


# --- files -------------------------------------------------------------------------------------


def _files_in_chunks(files: Iterable[str | os.PathLike[str]], chunk_size: int, workers: int, max_side: int | None,
                     analyse: Callable[[MapFn[Any, Any], list[Image8]], list[Any]]) -> Iterator[tuple[str, Any]]:
    paths = [os.fspath(path) for path in files]
    with _mapper(workers) as run:
        for start in range(0, len(paths), max(chunk_size, 1)):
            chunk = paths[start : start + max(chunk_size, 1)]
            loaded = run(lambda path: _read(path, "RGB", max_side), chunk)
            images = [image for image in loaded if not isinstance(image, ImageFileError)]
            results = iter(analyse(run, images))
            for path, image in zip(chunk, loaded, strict=True):
                yield path, image if isinstance(image, ImageFileError) else next(results)


def encode_files(files: Iterable[str | os.PathLike[str]], *, num_jitters: int = 1, model: str = "small",
                 number_of_times_to_upsample: int = 1, detection_model: str = "hog", max_side: int | None = None,
                 workers: int = 0, chunk_size: int = CHUNK_SIZE,
                 ) -> Iterator[tuple[str, list[Encoding] | ImageFileError]]:
    """(path, encodings) for each file in order, or (path, ImageFileError) for a file that is not
    a readable image. Images larger than ``max_side`` are first shrunk to fit it (Lanczos), as
    the face_recognition command line does at 1600 px."""
    check_landmark_model(model)
    if model == "large":
        notice_large_model(stacklevel=2)
    yield from _files_in_chunks(files, chunk_size, workers, max_side, lambda run, images: _encode(
        run, images, None, num_jitters, model, number_of_times_to_upsample, detection_model))


def locate_files(files: Iterable[str | os.PathLike[str]], *, number_of_times_to_upsample: int = 1, model: str = "hog",
                 workers: int = 0, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[str, list[Css] | ImageFileError]]:
    """(path, face boxes) for each file in order, or (path, ImageFileError)."""

    def analyse(run: MapFn[Any, Any], images: list[Image8]) -> list[list[Css]]:
        found = _rects(run, images, number_of_times_to_upsample, model)
        return [[api._trim_css_to_bounds(api._rect_to_css(rect), image.shape) for rect in rects]
                for image, rects in zip(images, found, strict=True)]

    yield from _files_in_chunks(files, chunk_size, workers, None, analyse)


def encode_folder(folder: str | os.PathLike[str], *, skip_unreadable: bool = False,
                  **options: Any) -> dict[str, list[Encoding]]:
    """{path: encodings} for every image file of ``folder`` (``encode_files``' options). An
    unreadable file raises ImageFileError unless ``skip_unreadable``."""
    out: dict[str, list[Encoding]] = {}
    for path, found in encode_files(image_files_in_folder(folder), **options):
        if isinstance(found, ImageFileError):
            if skip_unreadable:
                continue
            raise found
        out[path] = found
    return out
