"""Engine settings, read from the environment in this one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from face_engine.types import DetectorKind


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class EngineSettings:
    detector: DetectorKind = DetectorKind.HOG
    match_threshold: float = 0.6
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    detection_max_side: int = 1024
    detection_upsample: int = 1
    max_batch_size: int = 64
    decode_workers: int = 2
    index_exact_max: int = 100_000
    index_nprobe: int = 24

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if env is None else env
        detector_raw = env.get("FACE_DETECTION_MODEL", "hog").strip().lower() or "hog"
        try:
            detector = DetectorKind(detector_raw)
        except ValueError as exc:
            raise ValueError(f"FACE_DETECTION_MODEL must be 'hog' or 'cnn', got {detector_raw!r}") from exc
        settings = cls(
            detector=detector,
            match_threshold=_float(env, "FACE_MATCH_THRESHOLD", cls.match_threshold),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels),
            detection_max_side=_int(env, "FACE_DETECTION_MAX_SIDE", cls.detection_max_side),
            detection_upsample=_int(env, "FACE_DETECTION_UPSAMPLE", cls.detection_upsample),
            max_batch_size=_int(env, "FACE_ENGINE_MAX_BATCH_SIZE", cls.max_batch_size),
            decode_workers=_int(env, "FACE_ENGINE_DECODE_WORKERS", cls.decode_workers),
            index_exact_max=_int(env, "FACE_INDEX_EXACT_MAX", cls.index_exact_max),
            index_nprobe=_int(env, "FACE_INDEX_NPROBE", cls.index_nprobe),
        )
        if not 0 < settings.match_threshold <= 2:
            raise ValueError("FACE_MATCH_THRESHOLD must be in (0, 2]")
        if settings.detection_max_side < 64:
            raise ValueError("FACE_DETECTION_MAX_SIDE must be at least 64")
        if not 0 <= settings.detection_upsample <= 3:
            raise ValueError("FACE_DETECTION_UPSAMPLE must be between 0 and 3")
        for name, value in (
            ("MAX_UPLOAD_BYTES", settings.max_upload_bytes),
            ("MAX_IMAGE_PIXELS", settings.max_image_pixels),
            ("FACE_ENGINE_MAX_BATCH_SIZE", settings.max_batch_size),
            ("FACE_ENGINE_DECODE_WORKERS", settings.decode_workers),
            ("FACE_INDEX_NPROBE", settings.index_nprobe),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        return settings
