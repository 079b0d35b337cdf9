"""Image(s) → faces with boxes, landmarks, chips and embeddings. Batched, no I/O."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from face_engine.decode import decode_image
from face_engine.models.aligner import Aligner
from face_engine.models.detector import Detector
from face_engine.models.embedder import Embedder
from face_engine.models.landmarks import LandmarkModel
from face_engine.settings import EngineSettings
from face_engine.types import Detection, Face, ImageError, ImageFaces, RGBImage


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _as_rgb(image: RGBImage) -> RGBImage:
    """dlib takes only C-contiguous H×W×3 uint8 arrays: a crop or flipped view is copied."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


class FacePipeline:
    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.detector = Detector(settings)
        self.landmarks = LandmarkModel()
        self.aligner = Aligner()
        self.embedder = Embedder(settings)
        self._decode_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.decode_workers), thread_name_prefix="face-decode"
        )

    @property
    def model_id(self) -> str:
        """Identifies the embedding space: faces encoded under another id must be re-encoded."""
        return f"{self.embedder.name}/{self.landmarks.name}/{self.detector.name}"

    @property
    def loaded(self) -> bool:
        return self.detector.loaded and self.landmarks.loaded and self.embedder.loaded

    def load(self) -> None:
        self.detector.load()
        self.landmarks.load()
        self.embedder.load()

    def decode(self, data: bytes) -> RGBImage:
        return decode_image(
            data,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
        )

    def analyze_bytes(self, blobs: Sequence[bytes]) -> list[ImageFaces | ImageError]:
        """Decode (in a small thread pool) and analyse many images; a bad one fails alone."""

        def timed_decode(data: bytes) -> tuple[RGBImage | ImageError, float]:
            start = time.perf_counter()
            try:
                return self.decode(data), _ms(start)
            except ImageError as exc:
                return exc, _ms(start)

        decoded = list(self._decode_pool.map(timed_decode, blobs))
        good = [(i, img, ms) for i, (img, ms) in enumerate(decoded) if not isinstance(img, ImageError)]
        analysed = self.analyze([img for _, img, _ in good], decode_ms=[ms for _, _, ms in good])
        results: list[ImageFaces | ImageError] = [
            img if isinstance(img, ImageError) else None  # type: ignore[misc]
            for img, _ in decoded
        ]
        for (index, _, _), faces in zip(good, analysed, strict=True):
            results[index] = faces
        return results

    def analyze(
        self, images: Sequence[RGBImage], *, decode_ms: Sequence[float] | None = None
    ) -> list[ImageFaces]:
        """Detect and align per image, then embed every face of the batch in one call."""
        self.load()
        images = [_as_rgb(image) for image in images]
        per_image: list[tuple[list[Detection], list[Any], dict[str, float]]] = []
        chips: list[RGBImage] = []
        for index, image in enumerate(images):
            timings = {"decode": decode_ms[index] if decode_ms else 0.0}
            start = time.perf_counter()
            detections = self.detector.predict(image)
            timings["detect"] = _ms(start)
            start = time.perf_counter()
            shapes = [self.landmarks.predict(image, d.box) for d in detections]
            image_chips = [self.aligner.predict(image, s) for s in shapes]
            timings["landmarks"] = _ms(start)
            chips.extend(image_chips)
            per_image.append((detections, shapes, timings))

        start = time.perf_counter()
        embeddings = self.embedder.predict(chips)
        embed_ms_per_face = _ms(start) / len(chips) if chips else 0.0

        results: list[ImageFaces] = []
        cursor = 0
        for image, (detections, shapes, timings) in zip(images, per_image, strict=True):
            faces = []
            for detection, shape in zip(detections, shapes, strict=True):
                faces.append(
                    Face(
                        box=detection.box,
                        score=detection.score,
                        landmarks=self.landmarks.points(shape),
                        chip=chips[cursor],
                        embedding=embeddings[cursor],
                    )
                )
                cursor += 1
            timings["embed"] = embed_ms_per_face * len(faces)
            faces.sort(key=lambda f: f.box.area, reverse=True)
            results.append(
                ImageFaces(
                    width=image.shape[1], height=image.shape[0], faces=tuple(faces), timings_ms=timings
                )
            )
        return results
