"""Engine settings, read from the environment in this one place."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from face_engine.types import DetectorKind, Device, Precision, Runtime

EnumT = TypeVar("EnumT", bound=enum.StrEnum)


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


def _choice(env: Mapping[str, str], name: str, kind: type[EnumT], default: EnumT) -> EnumT:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        allowed = ", ".join(repr(k.value) for k in kind)
        raise ValueError(f"{name} must be one of {allowed}, got {raw!r}") from exc


@dataclass(frozen=True)
class EngineSettings:
    detector: DetectorKind = DetectorKind.HOG_CNN  # chosen by LFW accuracy: docs/performance.md
    runtime: Runtime = Runtime.AUTO
    device: Device = Device.AUTO
    precision: Precision = Precision.FP32
    detector_precision: Precision = Precision.FP32  # the CNN detector's, FACE_ENGINE_PRECISION by default
    data_dir: str = ""  # converted networks; empty: FACE_ENGINE_DATA_DIR's default in port.convert
    threads: int = 0  # CPU threads for ONNX Runtime / torch; 0: all cores
    match_threshold: float = 0.6
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_face_size: int = 40
    detection_max_side: int = 2048
    max_batch_size: int = 64
    workers: int = 0  # threads decoding and detecting a batch's images; 0: one per core
    enrol_jitters: int = 10  # enrolled embedding = mean over this many jittered chips (LFW +0.0041)
    verify_jitters: int = 5  # verify's embedding of each face: the same mean over this many (LFW 0.9850 → 0.9900)
    index_exact_max: int = 100_000
    index_nprobe: int = 32
    index_codec: str = "flat"  # an IVF index's vectors: "flat" (whole) or "sq8" (8 bits a component)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if env is None else env
        precision = _choice(env, "FACE_ENGINE_PRECISION", Precision, cls.precision)
        settings = cls(
            detector=_choice(env, "FACE_DETECTION_MODEL", DetectorKind, cls.detector),
            runtime=_choice(env, "FACE_ENGINE_RUNTIME", Runtime, cls.runtime),
            device=_choice(env, "FACE_ENGINE_DEVICE", Device, cls.device),
            precision=precision,
            detector_precision=_choice(env, "FACE_DETECTOR_PRECISION", Precision, precision),
            data_dir=env.get("FACE_ENGINE_DATA_DIR", cls.data_dir),
            threads=_int(env, "FACE_ENGINE_THREADS", cls.threads),
            match_threshold=_float(env, "FACE_MATCH_THRESHOLD", cls.match_threshold),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels),
            min_face_size=_int(env, "FACE_MIN_SIZE", cls.min_face_size),
            detection_max_side=_int(env, "FACE_DETECTION_MAX_SIDE", cls.detection_max_side),
            max_batch_size=_int(env, "FACE_ENGINE_MAX_BATCH_SIZE", cls.max_batch_size),
            workers=_int(env, "FACE_ENGINE_WORKERS", cls.workers),
            enrol_jitters=_int(env, "FACE_ENROL_JITTERS", cls.enrol_jitters),
            verify_jitters=_int(env, "FACE_VERIFY_JITTERS", cls.verify_jitters),
            index_exact_max=_int(env, "FACE_INDEX_EXACT_MAX", cls.index_exact_max),
            index_nprobe=_int(env, "FACE_INDEX_NPROBE", cls.index_nprobe),
            index_codec=env.get("FACE_INDEX_CODEC", "").strip().lower() or cls.index_codec,
        )
        if settings.index_codec not in ("flat", "sq8"):
            raise ValueError(f"FACE_INDEX_CODEC must be 'flat' or 'sq8', got {settings.index_codec!r}")
        if not 0 < settings.match_threshold <= 2:
            raise ValueError("FACE_MATCH_THRESHOLD must be in (0, 2]")
        if settings.detection_max_side < 64:
            raise ValueError("FACE_DETECTION_MAX_SIDE must be at least 64")
        if not 8 <= settings.min_face_size <= 4096:
            raise ValueError("FACE_MIN_SIZE must be between 8 and 4096 pixels")
        for name, value in (("FACE_ENGINE_THREADS", settings.threads), ("FACE_ENGINE_WORKERS", settings.workers)):
            if value < 0:
                raise ValueError(f"{name} must be 0 (one per core) or more")
        for name, value in (
            ("MAX_UPLOAD_BYTES", settings.max_upload_bytes),
            ("MAX_IMAGE_PIXELS", settings.max_image_pixels),
            ("FACE_ENGINE_MAX_BATCH_SIZE", settings.max_batch_size),
            ("FACE_INDEX_NPROBE", settings.index_nprobe),
            ("FACE_ENROL_JITTERS", settings.enrol_jitters),
            ("FACE_VERIFY_JITTERS", settings.verify_jitters),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        return settings
