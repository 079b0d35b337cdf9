"""The Django side's handle on the engine: one pipeline per process, built from settings, and the
batcher through which requests being answered use it."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence

from django.conf import settings

from core.errors import ServiceError
from core.serving import Batcher, Limits
from face_engine.pipeline import FacePipeline
from face_engine.registry import get_pipeline
from face_engine.runtime import resolve
from face_engine.settings import EngineSettings
from face_engine.types import ImageError, ImageFaces


def pipeline() -> FacePipeline:
    return get_pipeline(settings.FACE_ENGINE)


def embedding_model_id() -> str:
    return pipeline().model_id


_batcher: Batcher[bytes, ImageFaces | ImageError] | None = None
_batcher_lock = threading.Lock()


def request_batcher() -> Batcher[bytes, ImageFaces | ImageError]:
    """The process's batcher for ``pipeline().analyze_bytes`` (core/serving/batcher.py), from the
    RECOGNITION_* and SERVING_ENGINE_NICE settings. Its thread loads the models first, so the
    runtime's threads start at its lower priority."""
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            limits = Limits(max_images=settings.RECOGNITION_BATCH_MAX_IMAGES or default_batch_images(),
                            wait_ms=settings.RECOGNITION_BATCH_WAIT_MS,
                            max_wait_ms=settings.RECOGNITION_MAX_WAIT_MS,
                            queue_max=settings.RECOGNITION_QUEUE_MAX)
            _batcher = Batcher("recognition", lambda blobs: pipeline().analyze_bytes(blobs), limits,
                               nice=settings.SERVING_ENGINE_NICE, on_start=lambda: pipeline().load())
        return _batcher


def default_batch_images() -> int:
    """RECOGNITION_BATCH_MAX_IMAGES when left at 0: on a GPU the engine's own batch
    (FACE_ENGINE_MAX_BATCH_SIZE: the GPU's throughput grows with the batch); on the CPU two images
    per decoding and detecting thread (FACE_ENGINE_WORKERS, one per core): past that the throughput
    no longer grows, and every request of a batch waits for the whole batch (docs/performance.md)."""
    engine: EngineSettings = settings.FACE_ENGINE
    if resolve(engine)[1] == "cuda":
        return engine.max_batch_size
    return 2 * (engine.workers or os.cpu_count() or 1)


def analyze_for_request(blobs: Sequence[bytes]) -> list[ImageFaces | ImageError]:
    """``pipeline().analyze_bytes(blobs)`` for a request being answered: the images go into one
    engine call with those of the other requests waiting (a bad image still fails alone). Raises
    core.serving.Overloaded (503, Retry-After) when the wait would pass RECOGNITION_MAX_WAIT_MS or
    RECOGNITION_QUEUE_MAX requests already wait. Background work (jobs, cameras) calls the
    pipeline itself: it waits for nobody, and nobody waits for it here."""
    return request_batcher().submit(blobs)


def checked_distance_threshold(value: float | None, *, default: float) -> float:
    """``value`` (``default`` when None) as a distance threshold: a finite number in (0, 2], else a
    400 (the confidence divides by it; unit vectors are at most 2 apart). One check for every
    caller: recognition, verify, the duplicate check and pass."""
    threshold = default if value is None else value
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and 0 < threshold <= 2):
        raise ServiceError("invalid", "threshold: must be more than 0 and at most 2.",
                           details={"threshold": ["Must be more than 0 (and at most 2)."]})
    return float(threshold)
