"""Image(s) → faces with boxes, landmarks, chips and embeddings. Batched, no I/O."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_engine.decode import declared_pixels, decode_image, is_plain_jpeg
from face_engine.models.detector import Detector
from face_engine.models.embedder import Embedder
from face_engine.models.jitter import jitter_chips
from face_engine.models.landmarks import LandmarkModel
from face_engine.runtime import jpeg_decoder
from face_engine.settings import EngineSettings
from face_engine.types import Detection, Embedding, Face, Frame, ImageError, ImageFaces, RGBImage


def _as_rgb(image: RGBImage) -> RGBImage:
    """dlib takes only C-contiguous H×W×3 uint8 arrays: a crop or flipped view is copied."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


class FacePipeline:
    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.detector = Detector(settings)
        self.landmarks = LandmarkModel(settings)
        self.embedder = Embedder(settings)
        # The images of a batch are decoded and HOG-detected in parallel on these threads (Pillow
        # and dlib's detector release the GIL); the network then embeds every face at once.
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
        """Decode and detect many images (on the worker pool, or batched on a GPU), find their
        landmarks and chips, then embed all their faces in one call; a bad image fails alone.

        A batch is decoded and held together, so it goes in chunks whose declared pixels add up to
        at most MAX_IMAGE_PIXELS: a batch of 32 images at the pixel limit would otherwise hold
        ~3.8 GB of decoded pixels; this way a batch costs what its largest image costs."""
        results: list[ImageFaces | ImageError] = []
        for chunk in _chunks_by_pixels(list(blobs), self.settings.max_image_pixels):
            results.extend(self._back(self._front(chunk, self._decode_many)))
        return results

    def analyze(self, images: Sequence[RGBImage], *, min_face_size: int | None = None,
                cnn_fallback: bool = True) -> list[ImageFaces]:
        """Like ``analyze_bytes`` for decoded H×W×3 uint8 RGB arrays; ``min_face_size`` overrides
        the setting (a camera's own); ``cnn_fallback=False`` makes ``hog+cnn`` HOG alone (live
        streams: see ``Detector.predict_many``)."""
        front = self._front([_as_rgb(image) for image in images], None, min_face_size, cnn_fallback)
        return self._back(front)  # type: ignore[return-value]

    def _front(self, items: list[Any], decode: Any, min_face_size: int | None = None,
               cnn_fallback: bool = True) -> _Front:
        """Decode (unless given arrays) and detect every image of a batch."""
        self.load()
        clock = _Clock(len(items))
        if decode is None:
            decoded, clock.stages["decode"] = items, 0.0
        else:
            decoded = decode(items)
            clock.lap("decode")
        images = [d for d in decoded if not isinstance(d, ImageError)]
        detections = self.detector.predict_many(images, self._pool.map, min_face_size=min_face_size,
                                                cnn_fallback=cnn_fallback)
        clock.lap("detect")
        return _Front(decoded, images, detections, clock)

    def _back(self, front: _Front) -> list[ImageFaces | ImageError]:
        """Landmarks and chips, then one embedding call for every face of the batch. Each image's
        timings are its share of each stage's wall time."""
        clock = front.clock
        # In this thread: dlib's shape predictor and chip keep the GIL, and threads only slow
        # them down (measured: 1.6 ms a face on one thread, 4.0 on sixteen); the torch port takes
        # the whole batch in one call.
        points, chips = self.landmarks.align_batch(front.images, front.detections)
        clock.lap("landmarks")
        embeddings = iter(self.embedder.predict(chips))  # on torch: the chips as they are on the device
        embed_ms = clock.lap("embed")
        host_chips = iter(chips if isinstance(chips, list) else list(chips.cpu().numpy()))
        faces_total = sum(len(d) for d in front.detections)
        results: list[ImageFaces | ImageError] = []
        per_image = iter(zip(front.images, front.detections, points, strict=True))
        for item in front.decoded:
            if isinstance(item, ImageError):
                results.append(item)
                continue
            image, found, image_points = next(per_image)
            faces = [
                Face(box=d.box, score=d.score, landmarks=p, chip=next(host_chips), embedding=next(embeddings))
                for d, p in zip(found, image_points, strict=True)
            ]
            faces.sort(key=lambda f: f.box.area, reverse=True)
            timings = clock.shares()
            timings["embed"] = embed_ms * len(faces) / faces_total if faces_total else 0.0
            results.append(ImageFaces(width=image.shape[1], height=image.shape[0], faces=tuple(faces),
                                      timings_ms=timings))
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

    def probe_embedding(self, face: Face) -> Embedding:
        """The embedding to verify ``face`` with: the mean of its plain embedding (already computed)
        and those of ``verify_jitters`` − 1 jittered copies of its chip, the same chips as
        enrolment's first ones; the plain embedding when 1. Verifying two images this way on both
        sides took LFW from 0.9850 to 0.9900 (docs/performance.md): recognition keeps one embedding
        a face, verify is one or two faces a request and can afford a few more. The default is 5,
        not 3: over six jitter seeds 3 scored 0.9873–0.9905 and 5 scored 0.9895–0.9909."""
        count = self.settings.verify_jitters
        if count <= 1:
            return face.embedding
        jittered = self.embedder.predict(jitter_chips(face.chip, count)[1:])
        mean: Embedding = np.mean(np.stack([face.embedding, *jittered]), axis=0).astype(np.float32)
        return mean

    def _decode(self, data: bytes) -> RGBImage | ImageError:
        try:
            return self.decode(data)
        except ImageError as exc:
            return exc

    def _decode_many(self, blobs: list[bytes]) -> list[Frame | ImageError]:
        """Every image on the worker pool; on a GPU, plain JPEGs there in one batch instead, left
        there as tensors for every later stage (``face_engine.types.Frame``)."""
        if self._gpu_jpeg is None:
            return list(self._pool.map(self._decode, blobs))
        plain = list(self._pool.map(self._is_plain_jpeg, blobs))
        out: dict[int, RGBImage | ImageError] = {i: p for i, p in enumerate(plain) if isinstance(p, ImageError)}
        on_gpu = [i for i, p in enumerate(plain) if p is True]
        try:
            out |= zip(on_gpu, self._gpu_jpeg([blobs[i] for i in on_gpu]), strict=True)
        except Exception:  # noqa: BLE001 - a corrupt file in the batch (nvJPEG says RuntimeError), or the
            pass  # GPU out of memory: the CPU decoder then decodes the lot, and names any bad file
        rest = [i for i in range(len(blobs)) if i not in out]
        out |= zip(rest, self._pool.map(self._decode, [blobs[i] for i in rest]), strict=True)
        return [out[i] for i in range(len(blobs))]

    @functools.cached_property
    def _gpu_jpeg(self) -> Callable[[list[bytes]], list[Frame]] | None:
        return jpeg_decoder(self.settings)

    def _is_plain_jpeg(self, data: bytes) -> bool | ImageError:
        try:
            return is_plain_jpeg(data, max_bytes=self.settings.max_upload_bytes,
                                 max_pixels=self.settings.max_image_pixels)
        except ImageError as exc:
            return exc




class _Clock:
    """Wall time per stage of a batch, shared evenly by its images."""

    def __init__(self, images: int) -> None:
        self.images = max(images, 1)
        self.stages: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, stage: str) -> float:
        now = time.perf_counter()
        self.stages[stage] = (now - self._start) * 1000.0
        self._start = now
        return self.stages[stage]

    def shares(self) -> dict[str, float]:
        return {stage: ms / self.images for stage, ms in self.stages.items()}


@dataclass
class _Front:
    """A batch after decoding and detection."""

    decoded: list[RGBImage | ImageError]
    images: list[RGBImage]
    detections: list[list[Detection]]
    clock: _Clock


def _chunks_by_pixels(blobs: list[bytes], budget: int) -> list[list[bytes]]:
    """Consecutive runs of ``blobs`` whose declared pixels sum to at most ``budget`` (an image over
    it alone in its run: decoding refuses it anyway)."""
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    total = 0
    for blob in blobs:
        pixels = declared_pixels(blob)
        if current and total + pixels > budget:
            chunks.append(current)
            current, total = [], 0
        current.append(blob)
        total += pixels
    if current:
        chunks.append(current)
    return chunks
