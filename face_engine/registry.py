"""One pipeline per process and per settings, created lazily behind a lock (never at import)."""

from __future__ import annotations

import threading

from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings

_lock = threading.Lock()
_pipelines: dict[EngineSettings, FacePipeline] = {}


def get_pipeline(settings: EngineSettings | None = None) -> FacePipeline:
    settings = settings or EngineSettings.from_env()
    pipeline = _pipelines.get(settings)
    if pipeline is None:
        with _lock:
            pipeline = _pipelines.get(settings)
            if pipeline is None:
                pipeline = _pipelines[settings] = FacePipeline(settings)
    return pipeline


def loaded_pipelines() -> list[FacePipeline]:
    return [p for p in _pipelines.values() if p.loaded]
