"""The Django side's handle on the engine: one pipeline per process, built from settings."""

from __future__ import annotations

import math

from django.conf import settings

from core.errors import ServiceError
from face_engine.pipeline import FacePipeline
from face_engine.registry import get_pipeline


def pipeline() -> FacePipeline:
    return get_pipeline(settings.FACE_ENGINE)


def embedding_model_id() -> str:
    return pipeline().model_id


def checked_distance_threshold(value: float | None, *, default: float) -> float:
    """``value`` (``default`` when None) as a distance threshold: a finite number in (0, 2], else a
    400 (the confidence divides by it; unit vectors are at most 2 apart). One check for every
    caller: recognition, verify, the duplicate check and pass."""
    threshold = default if value is None else value
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and 0 < threshold <= 2):
        raise ServiceError("invalid", "threshold: must be more than 0 and at most 2.",
                           details={"threshold": ["Must be more than 0 (and at most 2)."]})
    return float(threshold)
