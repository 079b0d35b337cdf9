"""The enrolment gate: each face's quality record, the thresholds from settings, and the refusals.

The measures are face_engine.quality's; the defaults were chosen on LFW and the project's photos
(``python -m face_engine.bench.quality``, docs/performance.md). A face under the thresholds is
refused with its first reason as the error code; staff can force it (``force``), and the face is
then stored with ``quality_forced`` and the answer carries the reasons as warnings.
"""

from __future__ import annotations

from django.conf import settings

from core.errors import ServiceError
from face_engine.quality import FaceQuality, QualityThresholds, assess
from people.models import Face

FORCE_HINT = "Send a better photo, or set force=true to enrol it anyway."


def gate_enabled() -> bool:
    return bool(settings.QUALITY_GATE)


def quality_thresholds() -> QualityThresholds:
    return QualityThresholds(
        min_face_size=float(settings.QUALITY_MIN_FACE_SIZE),
        min_sharpness=float(settings.QUALITY_MIN_SHARPNESS),
        max_yaw=float(settings.QUALITY_MAX_YAW),
        max_pitch=float(settings.QUALITY_MAX_PITCH),
        max_roll=float(settings.QUALITY_MAX_ROLL),
        min_detection_score=float(settings.QUALITY_MIN_DETECTION_SCORE),
        max_cut_off=float(settings.QUALITY_MAX_CUT_OFF),
    )


def quality_reasons(quality: FaceQuality) -> tuple[str, ...]:
    """The reasons ``quality`` fails the configured thresholds (recorded even with the gate off)."""
    return assess(quality, quality_thresholds())


def quality_record(face: Face, quality: FaceQuality, reasons: tuple[str, ...]) -> None:
    """Copy ``quality`` onto ``face``'s columns (not saved)."""
    face.quality_face_size = round(quality.face_size, 2)
    face.quality_sharpness = round(quality.sharpness, 2)
    face.quality_yaw = round(quality.yaw, 2)
    face.quality_pitch = round(quality.pitch, 2)
    face.quality_roll = round(quality.roll, 2)
    face.quality_cut_off = round(quality.cut_off, 4)
    face.quality_reasons = list(reasons)


def quality_dict(face: Face) -> dict | None:
    """``face``'s quality record as the API shows it (None before it was measured)."""
    if face.quality_face_size is None:
        return None
    return {
        "face_size": face.quality_face_size,
        "sharpness": face.quality_sharpness,
        "yaw": face.quality_yaw,
        "pitch": face.quality_pitch,
        "roll": face.quality_roll,
        "detection_score": face.detection_score,
        "cut_off": face.quality_cut_off,
        "reasons": list(face.quality_reasons or []),
        "forced": face.quality_forced,
    }


def reason_message(reason: str, quality: FaceQuality) -> str:
    limits = quality_thresholds()
    q = quality
    messages = {
        "face_too_small": f"The face is {q.face_size:.0f} px across; at least {limits.min_face_size:g} px is needed.",
        "blurry": f"The face is blurred (sharpness {q.sharpness:.1f}; at least {limits.min_sharpness:g} is needed).",
        "extreme_pose": (f"The face is turned too far from the camera (yaw {q.yaw:.0f}°, pitch {q.pitch:.0f}°, "
                         f"roll {q.roll:.0f}°; the limits are {limits.max_yaw:g}°, {limits.max_pitch:g}° "
                         f"and {limits.max_roll:g}°)."),
        "low_confidence": (f"The detector is not sure this is a face (score {q.detection_score:.2f}; "
                           f"at least {limits.min_detection_score:g} is needed)."),
        "cut_off": (f"{100 * q.cut_off:.0f}% of the face is outside the photo (at most "
                    f"{100 * limits.max_cut_off:g}% may be)."),
    }
    return messages[reason]


def quality_refusal(quality: FaceQuality, reasons: tuple[str, ...]) -> ServiceError:
    """422 with the first reason as the code, every reason and the measures in details."""
    return ServiceError(
        reasons[0], f"{reason_message(reasons[0], quality)} {FORCE_HINT}", status_code=422,
        details={"reasons": list(reasons), "quality": quality.as_dict()},
    )


def quality_warnings(quality: FaceQuality, reasons: tuple[str, ...]) -> list[dict]:
    """What a forced enrolment overrode, one warning per reason."""
    return [{"code": reason, "message": reason_message(reason, quality)} for reason in reasons]
