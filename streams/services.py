"""Writes to cameras: configuration only. Camera workers own the lease and status columns and write
them with ``QuerySet.update``; these services save with ``update_fields`` limited to the
configuration, so a stale copy here never overwrites what a worker reported. Each write leaves an
audit record in its transaction; details hold ids and field names, never the source URL (it may
carry a password).

The field checks are shared by the API serializers and the admin form, so both refuse the same
things with the same messages; the services run them again, so no caller can skip them."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction

from core.audit.services import audit_record
from core.errors import ServiceError
from face_engine.live.source_url import SourceError, parse_source, redact
from people.models import Gallery
from streams.models import CONFIG_FIELDS, Camera

NAME_MAX = Camera._meta.get_field("name").max_length
FPS_MAX = 30.0
MIN_FACE_SIZE_RANGE = (20, 2000)
REDACTED_PASSWORD = "***"  # what redact() puts in place of a password
# Codes the API answers with when the field is the only one refused; any other problem is "invalid".
FIELD_CODES = ("invalid_source", "source_not_found", "unknown_gallery")


class CameraFieldError(ValueError):
    """One refused configuration value; ``code`` is the error code the API reports for it alone."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---- field checks ------------------------------------------------------------------------------

def check_name(value, *, camera: Camera | None = None) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        raise CameraFieldError("The camera needs a name.")
    if len(name) > NAME_MAX:
        raise CameraFieldError(f"The name is {len(name)} characters long; the limit is {NAME_MAX}.")
    others = Camera.objects.filter(name=name)
    if camera is not None and camera.pk is not None:
        others = others.exclude(pk=camera.pk)
    if others.exists():
        raise CameraFieldError(f"A camera named {name!r} already exists; camera names are unique.")
    return name


def check_source_url(value, *, camera: Camera | None = None) -> str:
    """The URL to store: checked by parse_source, with a redacted password given back (the API and
    the admin only ever show ``user:***@``) replaced by the stored one."""
    if not isinstance(value, str):
        raise CameraFieldError("The source URL must be a string.", code="invalid_source")
    url = _keep_password(value.strip(), camera.source_url if camera is not None else "")
    try:
        parse_source(url, file_root=settings.CAMERA_FILE_ROOT)
    except SourceError as exc:
        raise CameraFieldError(exc.message, code=exc.code) from exc
    return url


def _keep_password(url: str, stored: str) -> str:
    try:
        new, old = urlsplit(url), urlsplit(stored)
        new_password, old_password = new.password, old.password
        same_place = (new.scheme, new.username, new.hostname, new.port) == (old.scheme, old.username,
                                                                             old.hostname, old.port)
    except ValueError:
        return url  # malformed: parse_source says why
    if new_password != REDACTED_PASSWORD or not old_password:
        return url
    if not same_place:
        # Sending the stored password to another host or user would leak it: make them type it.
        raise CameraFieldError(f"{redact(url)}: '***' stands for the stored password only for the same user and "
                               "host; type the password.", code="invalid_source")
    return new._replace(netloc=new.netloc.replace(f":{REDACTED_PASSWORD}@", f":{old_password}@", 1)).geturl()


def check_analysis_fps(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CameraFieldError("analysis_fps must be a number.")
    if math.isnan(value) or not 0 < value <= FPS_MAX:
        raise CameraFieldError(f"analysis_fps must be more than 0 and at most {FPS_MAX:g}, not {value:g}.")
    return float(value)


def check_min_face_size(value) -> int:
    low, high = MIN_FACE_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, int):
        raise CameraFieldError("min_face_size must be a whole number of pixels.")
    if not low <= value <= high:
        raise CameraFieldError(f"min_face_size must be between {low} and {high} pixels, not {value}.")
    return value


def check_gallery(value) -> Gallery | None:
    if value is not None and not isinstance(value, Gallery):
        raise CameraFieldError("gallery must be a gallery or none.", code="unknown_gallery")
    return value


def check_enabled(value) -> bool:
    if not isinstance(value, bool):
        raise CameraFieldError("enabled must be true or false.")
    return value


def check_field(field: str, value, *, camera: Camera | None = None):
    """The value to store for one configuration field; CameraFieldError when it is refused."""
    if field == "name":
        return check_name(value, camera=camera)
    if field == "source_url":
        return check_source_url(value, camera=camera)
    return _CHECKS[field](value)


_CHECKS = {"analysis_fps": check_analysis_fps, "min_face_size": check_min_face_size,
           "gallery": check_gallery, "enabled": check_enabled}


def refusal(errors: dict[str, CameraFieldError]) -> ServiceError:
    """One 400 for all refused fields: the field's own code (invalid_source, source_not_found,
    unknown_gallery) when it is the only one refused, ``invalid`` otherwise."""
    (first_field, first), *rest = errors.items()
    code = first.code if not rest and first.code in FIELD_CODES else "invalid"
    message = first.message if first_field == "non_field_errors" else f"{first_field}: {first.message}"
    return ServiceError(code, message, status_code=400,
                        details={field: [error.message] for field, error in errors.items()})


def _clean(fields: dict, *, camera: Camera | None = None) -> dict:
    unknown = sorted(set(fields) - set(CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"not camera configuration fields: {', '.join(unknown)}")
    cleaned, errors = {}, {}
    for field, value in fields.items():
        try:
            cleaned[field] = check_field(field, value, camera=camera)
        except CameraFieldError as exc:
            errors[field] = exc
    if errors:
        raise refusal(errors)
    return cleaned


def _duplicate_name(name: str) -> ServiceError:
    # The unique index caught a camera of this name created since the check (two concurrent writes).
    return refusal({"name": CameraFieldError(f"A camera named {name!r} already exists; camera names are unique.")})


# ---- writes ------------------------------------------------------------------------------------

@transaction.atomic
def camera_create(
    *, name: str, source_url: str, gallery: Gallery | None = None, analysis_fps: float = 5.0,
    min_face_size: int = 80, enabled: bool = True, actor=None, request_id: str = "",
) -> Camera:
    fields = _clean({"name": name, "source_url": source_url, "gallery": gallery, "analysis_fps": analysis_fps,
                     "min_face_size": min_face_size, "enabled": enabled})
    try:
        with transaction.atomic():
            camera = Camera.objects.create(**fields)
    except IntegrityError as exc:
        raise _duplicate_name(fields["name"]) from exc
    audit_record(actor=actor, action="camera.create", target_type="camera", target_ids=[camera.pk],
                 details={"gallery_id": camera.gallery_id, "enabled": camera.enabled}, request_id=request_id)
    return camera


def _stored(camera: Camera, field: str):
    return camera.gallery_id if field == "gallery" else getattr(camera, field)


def _given(field: str, value):
    return value.pk if field == "gallery" and value is not None else value


@transaction.atomic
def camera_update(*, camera: Camera, actor=None, request_id: str = "", **fields) -> Camera:
    """Set the given configuration fields. Only those that change are written (with updated_at,
    which tells the worker to restart the camera); nothing changed writes nothing, not even an
    audit record."""
    cleaned = _clean(fields, camera=camera)
    changed = sorted(f for f, value in cleaned.items() if _given(f, value) != _stored(camera, f))
    if not changed:
        return camera
    for field in changed:
        setattr(camera, field, cleaned[field])
    try:
        with transaction.atomic():
            camera.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as exc:
        raise _duplicate_name(camera.name) from exc
    except DatabaseError:
        # An update that matched no row: the camera was deleted since it was read.
        if not Camera.objects.filter(pk=camera.pk).exists():
            raise ServiceError("not_found", "The camera was deleted meanwhile.", status_code=404) from None
        raise
    audit_record(actor=actor, action="camera.update", target_type="camera", target_ids=[camera.pk],
                 details={"fields": changed, "gallery_id": camera.gallery_id}, request_id=request_id)
    return camera


@transaction.atomic
def camera_delete(*, camera: Camera, actor=None, request_id: str = "") -> None:
    pk, gallery_id = camera.pk, camera.gallery_id
    camera.delete()
    audit_record(actor=actor, action="camera.delete", target_type="camera", target_ids=[pk],
                 details={"gallery_id": gallery_id}, request_id=request_id)
