"""The Django side's handle on the engine: one pipeline per process, built from settings."""

from __future__ import annotations

from django.conf import settings

from face_engine.pipeline import FacePipeline
from face_engine.registry import get_pipeline


def pipeline() -> FacePipeline:
    return get_pipeline(settings.FACE_ENGINE)


def embedding_model_id() -> str:
    return pipeline().model_id
