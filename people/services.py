"""Writes to people, galleries and faces. Each write bumps the index version after commit and
leaves an audit record in its transaction (``actor`` and ``request_id`` say who asked and in which
request; management commands and tests leave them blank)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from audit.services import audit_record
from core.errors import ServiceError
from face_engine.types import ImageError, ImageFaces
from people.engine import pipeline
from people.index_version import index_version_bump
from people.models import Face, Gallery, Person, embedding_bytes

logger = logging.getLogger(__name__)


# ---- galleries -------------------------------------------------------------------------------

@transaction.atomic
def gallery_create(*, name: str, slug: str, description: str = "", actor=None, request_id: str = "") -> Gallery:
    gallery = Gallery.objects.create(name=name, slug=slug, description=description)
    audit_record(actor=actor, action="gallery.create", target_type="gallery", target_ids=[gallery.pk],
                 details={"slug": slug}, request_id=request_id)
    return gallery


@transaction.atomic
def gallery_update(*, gallery: Gallery, actor=None, request_id: str = "", **fields) -> Gallery:
    for key, value in fields.items():
        setattr(gallery, key, value)
    gallery.save()
    audit_record(actor=actor, action="gallery.update", target_type="gallery", target_ids=[gallery.pk],
                 details={"fields": sorted(fields)}, request_id=request_id)
    return gallery


@transaction.atomic
def gallery_delete(*, gallery: Gallery, actor=None, request_id: str = "") -> None:
    pk, slug = gallery.pk, gallery.slug
    gallery.delete()
    index_version_bump()
    audit_record(actor=actor, action="gallery.delete", target_type="gallery", target_ids=[pk],
                 details={"slug": slug}, request_id=request_id)


# ---- people ----------------------------------------------------------------------------------

@transaction.atomic
def person_create(
    *, name: str, external_id: str | None = None, metadata: dict | None = None,
    galleries: Iterable[Gallery] = (), actor=None, request_id: str = "",
) -> Person:
    person = Person.objects.create(name=name, external_id=external_id or None, metadata=metadata or {})
    galleries = list(galleries)
    if galleries:
        person.galleries.set(galleries)
    audit_record(actor=actor, action="person.create", target_type="person", target_ids=[person.pk],
                 details={"galleries": sorted(g.pk for g in galleries)}, request_id=request_id)
    return person


@transaction.atomic
def person_update(
    *, person: Person, galleries: Iterable[Gallery] | None = None, actor=None, request_id: str = "", **fields
) -> Person:
    if "external_id" in fields:
        fields["external_id"] = fields["external_id"] or None  # blank means "none", not ""
    for key, value in fields.items():
        setattr(person, key, value)
    person.save()
    details: dict = {"fields": sorted(fields)}
    if galleries is not None:
        galleries = list(galleries)
        person.galleries.set(galleries)
        index_version_bump()
        details["galleries"] = sorted(g.pk for g in galleries)
    audit_record(actor=actor, action="person.update", target_type="person", target_ids=[person.pk],
                 details=details, request_id=request_id)
    return person


@transaction.atomic
def person_delete(*, person: Person, actor=None, request_id: str = "") -> None:
    faces = list(person.faces.all())
    files = _face_files(faces)
    pk = person.pk
    person.delete()
    index_version_bump()
    audit_record(actor=actor, action="person.delete", target_type="person", target_ids=[pk],
                 details={"face_ids": [f.pk for f in faces]}, request_id=request_id)
    transaction.on_commit(lambda: _delete_files(files))


# ---- faces -----------------------------------------------------------------------------------

@dataclass
class EnrolOutcome:
    """One uploaded photo's fate: a face (new or already there) or a refusal."""

    filename: str
    face: Face | None = None
    duplicate: bool = False
    error: ServiceError | None = None


def _face_files(faces: Iterable[Face]) -> list[tuple]:
    return [(f.image.storage, f.image.name) for f in faces if f.image] + [
        (f.thumbnail.storage, f.thumbnail.name) for f in faces if f.thumbnail
    ]


def _delete_files(files: Sequence[tuple]) -> None:
    for storage, name in files:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name, exc_info=True)


def _chip_jpeg(chip) -> ContentFile:
    buffer = io.BytesIO()
    Image.fromarray(chip).save(buffer, format="JPEG", quality=90)
    return ContentFile(buffer.getvalue(), name="thumb.jpg")


def _apply_result(face: Face, result: ImageFaces | ImageError, *, largest: bool) -> ServiceError | None:
    """Set ``face``'s status/box/embedding from an engine result; return the refusal, if any."""
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
    face.embedding = embedding_bytes(pipeline().enrol_embedding(best))
    face.model = pipeline().model_id
    face.status = Face.Status.ENCODED
    face.encoded_at = timezone.now()
    old_thumbnail = [(face.thumbnail.storage, face.thumbnail.name)] if face.thumbnail else []
    face.thumbnail.save("thumb.jpg", _chip_jpeg(best.chip), save=False)
    # The old file goes only once the new one is committed: a re-encoding rolled back (a killed
    # worker, a job's batch given up) leaves the face with the thumbnail it had.
    transaction.on_commit(lambda: _delete_files(old_thumbnail))
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
    *, person: Person, uploads: Sequence, largest: bool = False, run_async: bool = False,
    actor=None, request_id: str = "",
) -> list[EnrolOutcome]:
    """Enrol each uploaded photo. Synchronously: refused photos are not kept. With ``run_async``
    the photos are stored as pending and encoded by a job (see jobs.services). One audit record
    when any face was stored; a request that stored nothing wrote nothing and leaves none."""
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
                outcomes[i].face = _face_store(person, blobs[i], digests[i], outcomes[i].filename)
            if todo:
                _audit_enrol(person, outcomes, run_async=True, actor=actor, request_id=request_id)
        return outcomes

    results = pipeline().analyze_bytes([blobs[i] for i in todo])
    with transaction.atomic():
        stored = False
        for i, result in zip(todo, results, strict=True):
            face = Face(person=person, sha256=digests[i])
            refusal = _apply_result(face, result, largest=largest)
            if refusal is not None:
                outcomes[i].error = refusal
                continue
            face.image.save(_safe_name(outcomes[i].filename), ContentFile(blobs[i]), save=False)
            try:
                with transaction.atomic():
                    face.save()
            except IntegrityError:  # the same photo was enrolled concurrently
                _delete_files(_face_files([face]))
                outcomes[i].face = Face.objects.get(person=person, sha256=digests[i])
                outcomes[i].duplicate = True
                continue
            outcomes[i].face = face
            stored = True
        if stored:
            index_version_bump()
            _audit_enrol(person, outcomes, run_async=False, actor=actor, request_id=request_id)
    return outcomes


def _audit_enrol(person: Person, outcomes: Sequence[EnrolOutcome], *, run_async: bool, actor,
                 request_id: str) -> None:
    new = [o.face.pk for o in outcomes if o.face is not None and not o.duplicate]
    audit_record(
        actor=actor, action="face.enrol", target_type="face", target_ids=new, request_id=request_id,
        details={
            "person_id": person.pk,
            "async": run_async,
            "faces": [{"face_id": o.face.pk if o.face else None, "duplicate": o.duplicate,
                       "status": o.error.error_code if o.error else o.face.status if o.face else None}
                      for o in outcomes],
        },
    )


def _safe_name(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"photo.{suffix if suffix.isalnum() else 'img'}"


def _face_store(person: Person, data: bytes, digest: str, filename: str) -> Face:
    face = Face(person=person, sha256=digest, status=Face.Status.PENDING)
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
                refusal = _apply_result(face, result, largest=largest)
                if face.pk in errors:
                    face.status, face.error = Face.Status.FAILED, errors[face.pk]
                elif refusal is not None:
                    errors[face.pk] = refusal.message
                try:
                    with transaction.atomic():
                        face.save(force_update=True)  # never resurrect a face deleted meanwhile
                except DatabaseError:
                    if Face.objects.filter(pk=face.pk).exists():
                        raise
                    errors.pop(face.pk, None)
                    continue
                statuses[face.pk] = face.status
            index_version_bump()
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


@transaction.atomic
def face_delete(*, face: Face, actor=None, request_id: str = "") -> None:
    files = _face_files([face])
    pk = face.pk
    face.delete()
    index_version_bump()
    audit_record(actor=actor, action="face.delete", target_type="face", target_ids=[pk],
                 details={"person_id": face.person_id}, request_id=request_id)
    transaction.on_commit(lambda: _delete_files(files))
