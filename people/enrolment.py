"""Enrolment: photos → faces, through the quality gate and the duplicate check (re-exported by
people.services, where callers import them from).

A new face is measured (people/quality.py) and refused, with its first reason as the error code,
when it is under the quality thresholds; then refused as ``possible_duplicate`` when its embedding
already matches another person (people.duplicates). ``force`` (staff) stores it anyway: the face is
marked ``quality_forced`` and the outcome carries what was overridden as warnings. Re-encoding a
face that was encoded before records its quality again but does not gate it: it was accepted once.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from core.audit.services import audit_record
from core.errors import ServiceError
from face_engine.quality import face_quality
from face_engine.types import ImageError, ImageFaces
from people.duplicates import DuplicateHit, possible_duplicate
from people.engine import analyze_for_request, pipeline
from people.files import delete_files, face_files
from people.index_log import index_faces_changed
from people.models import Face, Person, embedding_bytes
from people.quality import (
    FORCE_HINT,
    gate_enabled,
    quality_reasons,
    quality_record,
    quality_refusal,
    quality_warnings,
)


@dataclass
class EnrolOutcome:
    """One uploaded photo's fate: a face (new or already there) or a refusal; ``warnings``: what a
    forced enrolment overrode ({"code", "message", ...} each)."""

    filename: str
    face: Face | None = None
    duplicate: bool = False
    error: ServiceError | None = None
    warnings: list[dict] = field(default_factory=list)


def _chip_jpeg(chip) -> ContentFile:
    buffer = io.BytesIO()
    Image.fromarray(chip).save(buffer, format="JPEG", quality=90)
    return ContentFile(buffer.getvalue(), name="thumb.jpg")


def duplicate_refusal(hit: DuplicateHit) -> ServiceError:
    return ServiceError(
        "possible_duplicate",
        f"The face looks like {hit.person_name} (person {hit.person_id}, face {hit.face_id}, distance "
        f"{hit.distance:.3f}): the same person may be enrolled twice. {FORCE_HINT}",
        status_code=422,
        details=_hit_details(hit),
    )


def _hit_details(hit: DuplicateHit) -> dict:
    return {"person_id": hit.person_id, "person_name": hit.person_name, "face_id": hit.face_id,
            "distance": round(hit.distance, 4)}


def _refused(face: Face, error: ServiceError) -> ServiceError:
    face.status = Face.Status.REFUSED
    face.error = f"{error.error_code}: {error.message}"
    return error


def _apply_result(face: Face, result: ImageFaces | ImageError, *, largest: bool, gate: bool = False,
                  force: bool = False, warnings: list[dict] | None = None) -> ServiceError | None:
    """Set ``face``'s status/box/quality/embedding from an engine result; return the refusal, if
    any. With ``gate`` the quality gate and the duplicate check apply (unless ``force``: what they
    would have refused is appended to ``warnings``)."""
    face.embedding = None
    face.error = ""
    if isinstance(result, ImageError):
        face.status = Face.Status.FAILED
        face.error = result.message
        return ServiceError(result.code, result.message, status_code=result.status)
    face.image_width, face.image_height = result.width, result.height
    if not result.faces:
        face.status = Face.Status.NO_FACE
        face.error = "No face was found in the photo."
        return ServiceError("no_face", face.error, status_code=422)
    if len(result.faces) > 1 and not largest:
        face.status = Face.Status.MULTIPLE_FACES
        face.error = (f"{len(result.faces)} faces were found in the photo; send a photo of one "
                      "person or set largest=true to enrol the largest face.")
        return ServiceError("multiple_faces", face.error, status_code=422,
                            details={"faces": [f.box.as_dict() for f in result.faces]})
    best = result.faces[0]
    box = best.box
    face.box_top, face.box_right, face.box_bottom, face.box_left = box.top, box.right, box.bottom, box.left
    face.detection_score = best.score
    quality = face_quality(best, result.width, result.height)
    reasons = quality_reasons(quality)
    quality_record(face, quality, reasons)
    warnings = warnings if warnings is not None else []
    # The gate comes before the (jittered, ten times dearer) enrolment embedding.
    if gate and reasons and gate_enabled():
        if not force:
            return _refused(face, quality_refusal(quality, reasons))
        face.quality_forced = True
        warnings.extend(quality_warnings(quality, reasons))
    embedding = pipeline().enrol_embedding(best)
    if gate:
        hit = possible_duplicate(person=face.person, embedding=embedding)
        if hit is not None and not force:
            return _refused(face, duplicate_refusal(hit))
        if hit is not None:
            face.quality_forced = True
            warnings.append({"code": "possible_duplicate", "message": duplicate_refusal(hit).message,
                             **_hit_details(hit)})
    face.embedding = embedding_bytes(embedding)
    face.model = pipeline().model_id
    face.status = Face.Status.ENCODED
    face.encoded_at = timezone.now()
    old_thumbnail = [(face.thumbnail.storage, face.thumbnail.name)] if face.thumbnail else []
    face.thumbnail.save("thumb.jpg", _chip_jpeg(best.chip), save=False)
    # The old file goes only once the new one is committed: a re-encoding rolled back (a killed
    # worker, a job's batch given up) leaves the face with the thumbnail it had.
    transaction.on_commit(lambda: delete_files(old_thumbnail))
    return None


def read_upload(upload) -> bytes:
    """Read an uploaded file, refusing it before reading when it is over the size limit."""
    limit = pipeline().settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise ServiceError("file_too_large",
                           f"{upload.name}: the file is {upload.size} bytes; the limit is {limit} bytes.",
                           status_code=413)
    return upload.read()


def face_enroll(
    *, person: Person, uploads: Sequence, largest: bool = False, run_async: bool = False, force: bool = False,
    actor=None, request_id: str = "",
) -> list[EnrolOutcome]:
    """Enrol each uploaded photo. Synchronously: refused photos are not kept. With ``run_async``
    the photos are stored as pending and encoded by a job (see jobs.services), which applies the
    gate (a refused face is kept with status "refused"). ``force`` overrides the quality gate and
    the duplicate check. One audit record when any face was stored; a request that stored nothing
    wrote nothing and leaves none."""
    outcomes: list[EnrolOutcome] = []
    blobs: list[bytes] = []
    for upload in uploads:
        outcome = EnrolOutcome(filename=getattr(upload, "name", "image"))
        outcomes.append(outcome)
        try:
            blobs.append(read_upload(upload))
        except ServiceError as exc:
            outcome.error = exc
            blobs.append(b"")
    return _enrol_blobs(person=person, outcomes=outcomes, blobs=blobs, largest=largest, run_async=run_async,
                        force=force, actor=actor, request_id=request_id)


def face_enroll_bytes(
    *, person: Person, blobs: list[tuple[str, bytes]], force: bool = False, largest: bool = True, actor=None,
    request_id: str = "",
) -> list[EnrolOutcome]:
    """``face_enroll`` for photos already held as bytes, as (filename, bytes) pairs: a stored crop
    or photo enrolled for someone (corrections' "this is Y", naming an unknown cluster), through
    the same quality gate and duplicate check."""
    limit = pipeline().settings.max_upload_bytes
    outcomes = [EnrolOutcome(filename=name or "image") for name, _ in blobs]
    data: list[bytes] = []
    for outcome, (name, blob) in zip(outcomes, blobs, strict=True):
        if len(blob) > limit:
            outcome.error = ServiceError("file_too_large", f"{name}: the file is {len(blob)} bytes; the limit is "
                                         f"{limit} bytes.", status_code=413)
            blob = b""
        data.append(blob)
    return _enrol_blobs(person=person, outcomes=outcomes, blobs=data, largest=largest, run_async=False,
                        force=force, actor=actor, request_id=request_id)


def _enrol_blobs(*, person: Person, outcomes: list[EnrolOutcome], blobs: list[bytes], largest: bool,
                 run_async: bool, force: bool, actor, request_id: str) -> list[EnrolOutcome]:
    digests = [hashlib.sha256(b).hexdigest() for b in blobs]
    existing = {f.sha256: f for f in Face.objects.filter(person=person, sha256__in=digests)}
    todo: list[int] = []
    for i, outcome in enumerate(outcomes):
        if outcome.error:
            continue
        if digests[i] in existing:
            outcome.face, outcome.duplicate = existing[digests[i]], True
        elif digests[i] in digests[:i]:
            outcome.error = ServiceError("duplicate_upload", "The same photo was sent twice.", status_code=422)
        else:
            todo.append(i)

    if run_async:
        with transaction.atomic():
            for i in todo:
                outcomes[i].face = _face_store(person, blobs[i], digests[i], outcomes[i].filename, force=force)
            if todo:
                _audit_enrol(person, outcomes, run_async=True, force=force, actor=actor, request_id=request_id)
        return outcomes

    results = analyze_for_request([blobs[i] for i in todo])  # a request's: batched, 503 when overloaded
    with transaction.atomic():
        stored = False
        for i, result in zip(todo, results, strict=True):
            face = Face(person=person, sha256=digests[i])
            refusal = _apply_result(face, result, largest=largest, gate=True, force=force,
                                    warnings=outcomes[i].warnings)
            if refusal is not None:
                outcomes[i].error = refusal
                continue
            face.image.save(_safe_name(outcomes[i].filename), ContentFile(blobs[i]), save=False)
            try:
                with transaction.atomic():
                    face.save()
            except IntegrityError:  # the same photo was enrolled concurrently
                delete_files(face_files([face]))
                outcomes[i].face = Face.objects.get(person=person, sha256=digests[i])
                outcomes[i].duplicate = True
                outcomes[i].warnings.clear()
                continue
            outcomes[i].face = face
            stored = True
        if stored:
            index_faces_changed(outcome.face.pk for outcome in outcomes if outcome.face is not None
                                and not outcome.duplicate)
            _audit_enrol(person, outcomes, run_async=False, force=force, actor=actor, request_id=request_id)
    return outcomes


def _audit_enrol(person: Person, outcomes: Sequence[EnrolOutcome], *, run_async: bool, force: bool, actor,
                 request_id: str) -> None:
    new = [o.face.pk for o in outcomes if o.face is not None and not o.duplicate]
    audit_record(
        actor=actor, action="face.enrol", target_type="face", target_ids=new, request_id=request_id,
        details={
            "person_id": person.pk,
            "async": run_async,
            **({"force": True} if force else {}),
            "faces": [{"face_id": o.face.pk if o.face else None, "duplicate": o.duplicate,
                       "status": o.error.error_code if o.error else o.face.status if o.face else None,
                       **({"overridden": [w["code"] for w in o.warnings]} if o.warnings else {})}
                      for o in outcomes],
        },
    )


def _safe_name(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"photo.{suffix if suffix.isalnum() else 'img'}"


def _face_store(person: Person, data: bytes, digest: str, filename: str, *, force: bool = False) -> Face:
    # ``quality_forced`` holds the request's force until the job encodes the face: the gate reads
    # it there, and leaves it set only when it overrode something.
    face = Face(person=person, sha256=digest, status=Face.Status.PENDING, quality_forced=force)
    face.image.save(_safe_name(filename), ContentFile(data), save=False)
    face.save()
    return face


def face_encode_many(
    *, face_ids: Sequence[int], largest: bool = False, actor=None, request_id: str = "", job_id: str = "",
    on_batch: Callable[[Sequence[int], dict[int, str]], None] | None = None,
) -> dict[int, str]:
    """(Re-)encode stored faces from their stored image, in engine batches.

    Returns {face_id: error message} for faces that could not be encoded. Idempotent: running it
    twice leaves the same embeddings. One audit record per batch (``job_id`` says which job ran it).
    ``on_batch(batch_ids, batch_errors)`` runs inside each batch's transaction, so whatever it writes
    (a job's progress) commits together with the batch's faces, or not at all.

    A face never encoded before (asynchronous enrolment) goes through the quality gate and the
    duplicate check, forced when it was stored with force; a refused one gets status "refused" and
    an error starting with the reason code. A face encoded before is re-encoded without the gate.
    """
    errors: dict[int, str] = {}
    engine = pipeline()
    batch = max(1, engine.settings.max_batch_size)
    for start in range(0, len(face_ids), batch):
        batch_ids = list(face_ids[start : start + batch])
        faces = list(Face.objects.filter(pk__in=batch_ids).select_related("person"))
        results = engine.analyze_bytes([_stored_image(face, errors) for face in faces])
        with transaction.atomic():
            statuses: dict[int, str] = {}
            for face, result in zip(faces, results, strict=True):
                first = face.encoded_at is None
                forced, face.quality_forced = face.quality_forced, False if first else face.quality_forced
                refusal = _apply_result(face, result, largest=largest, gate=first, force=first and forced)
                if first and face.status != Face.Status.ENCODED:
                    face.quality_forced = forced  # not encoded (no face, unreadable): a retry is still forced
                if face.pk in errors:
                    face.status, face.error = Face.Status.FAILED, errors[face.pk]
                elif refusal is not None:
                    errors[face.pk] = face.error if face.status == Face.Status.REFUSED else refusal.message
                try:
                    with transaction.atomic():
                        face.save(force_update=True)  # never resurrect a face deleted meanwhile
                except DatabaseError:
                    if Face.objects.filter(pk=face.pk).exists():
                        raise
                    errors.pop(face.pk, None)
                    continue
                statuses[face.pk] = face.status
            index_faces_changed(statuses)
            if statuses:
                audit_record(actor=actor, action="face.encode", target_type="face", target_ids=list(statuses),
                             details={"statuses": statuses, "job_id": job_id or None}, request_id=request_id)
            if on_batch is not None:
                on_batch(batch_ids, {pk: errors[pk] for pk in batch_ids if pk in errors})
    return errors


def _stored_image(face: Face, errors: dict[int, str]) -> bytes:
    """The face's stored photo; empty (and an error noted) when it cannot be read."""
    try:
        with face.image.open("rb") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        errors[face.pk] = f"stored image unreadable: {exc}"
        return b""
