"""Image(s) → faces with boxes, landmarks, chips and embeddings. Batched, no I/O."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_engine.decode import decode_image
from face_engine.models.aligner import Aligner
from face_engine.models.detector import Detector
from face_engine.models.embedder import Embedder
from face_engine.models.jitter import jitter_chips
from face_engine.models.landmarks import LandmarkModel
from face_engine.settings import EngineSettings
from face_engine.types import Detection, Embedding, Face, ImageError, ImageFaces, RGBImage


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
        # Decoding, detection and alignment of the images of a batch overlap on these threads
        # (dlib releases the GIL); the network then embeds every face of the batch at once.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.workers or os.cpu_count() or 1, thread_name_prefix="face-cpu"
        )

    @property
    def model_id(self) -> str:
        """Identifies the embedding space: faces encoded under another id must be re-encoded.

        The detector and the runtime are not part of it: they move where a face is found (and
        the ported runtimes equal dlib to 1e-6), not what its embedding means."""
        return f"{self.embedder.name}/{self.landmarks.name}"

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
        """Decode, detect and align many images on the worker pool, then embed all their faces in
        one call; a bad image fails alone."""
        return self._run(list(blobs), self._decode_and_prepare)

    def analyze(self, images: Sequence[RGBImage]) -> list[ImageFaces]:
        """Like ``analyze_bytes`` for decoded H×W×3 uint8 RGB arrays."""
        checked = [_as_rgb(image) for image in images]
        return self._run(checked, self._prepare)  # type: ignore[return-value]

    def _run(self, items: list[Any], prepare: Any) -> list[ImageFaces | ImageError]:
        self.load()
        prepared = list(self._pool.map(prepare, items))
        chips = [chip for p in prepared if isinstance(p, _Prepared) for chip in p.chips]
        start = time.perf_counter()
        embeddings = iter(self.embedder.predict(chips))
        embed_ms_per_face = _ms(start) / len(chips) if chips else 0.0
        results: list[ImageFaces | ImageError] = []
        for item in prepared:
            if isinstance(item, ImageError):
                results.append(item)
                continue
            faces = [
                Face(box=d.box, score=d.score, landmarks=points, chip=chip, embedding=next(embeddings))
                for d, points, chip in zip(item.detections, item.points, item.chips, strict=True)
            ]
            faces.sort(key=lambda f: f.box.area, reverse=True)
            item.timings["embed"] = embed_ms_per_face * len(faces)
            results.append(ImageFaces(width=item.width, height=item.height, faces=tuple(faces),
                                      timings_ms=item.timings))
        return results

    def enrol_embedding(self, face: Face) -> Embedding:
        """The embedding to enrol ``face`` with: the mean over ``enrol_jitters`` jittered copies of
        its chip (dlib's num_jitters; deterministic here), the plain embedding when 1."""
        count = self.settings.enrol_jitters
        if count <= 1:
            return face.embedding
        vectors = self.embedder.predict(jitter_chips(face.chip, count))
        mean: Embedding = np.mean(np.stack(vectors), axis=0).astype(np.float32)
        return mean

    def _decode_and_prepare(self, data: bytes) -> _Prepared | ImageError:
        start = time.perf_counter()
        try:
            image = self.decode(data)
        except ImageError as exc:
            return exc
        return self._prepare(image, decode_ms=_ms(start))

    def _prepare(self, image: RGBImage, decode_ms: float = 0.0) -> _Prepared:
        """Detect, then landmarks and the aligned chip of each face: the per-image CPU work."""
        timings = {"decode": decode_ms}
        start = time.perf_counter()
        detections = self.detector.predict(image)
        timings["detect"] = _ms(start)
        start = time.perf_counter()
        shapes = [self.landmarks.predict(image, d.box) for d in detections]
        points = [self.landmarks.points(shape) for shape in shapes]
        chips = [self.aligner.predict(image, shape) for shape in shapes]
        timings["landmarks"] = _ms(start)
        return _Prepared(image.shape[1], image.shape[0], detections, points, chips, timings)


@dataclass
class _Prepared:
    width: int
    height: int
    detections: list[Detection]
    points: list[tuple[tuple[float, float], ...]]
    chips: list[RGBImage]
    timings: dict[str, float]
