"""Writes to people, galleries and faces. Each write bumps the index version after commit."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from core.errors import ServiceError
from face_engine.types import ImageError, ImageFaces
from people.engine import pipeline
from people.index_version import index_version_bump
from people.models import Face, Gallery, Person, embedding_bytes

logger = logging.getLogger(__name__)


# ---- galleries -------------------------------------------------------------------------------

@transaction.atomic
def gallery_create(*, name: str, slug: str, description: str = "") -> Gallery:
    return Gallery.objects.create(name=name, slug=slug, description=description)


@transaction.atomic
def gallery_update(*, gallery: Gallery, **fields) -> Gallery:
    for key, value in fields.items():
        setattr(gallery, key, value)
    gallery.save()
    return gallery


@transaction.atomic
def gallery_delete(*, gallery: Gallery) -> None:
    gallery.delete()
    index_version_bump()


# ---- people ----------------------------------------------------------------------------------

@transaction.atomic
def person_create(
    *, name: str, external_id: str | None = None, metadata: dict | None = None,
    galleries: Iterable[Gallery] = (),
) -> Person:
    person = Person.objects.create(name=name, external_id=external_id or None, metadata=metadata or {})
    galleries = list(galleries)
    if galleries:
        person.galleries.set(galleries)
    return person


@transaction.atomic
def person_update(*, person: Person, galleries: Iterable[Gallery] | None = None, **fields) -> Person:
    if "external_id" in fields:
        fields["external_id"] = fields["external_id"] or None  # blank means "none", not ""
    for key, value in fields.items():
        setattr(person, key, value)
    person.save()
    if galleries is not None:
        person.galleries.set(list(galleries))
        index_version_bump()
    return person


@transaction.atomic
def person_delete(*, person: Person) -> None:
    files = _face_files(person.faces.all())
    person.delete()
    index_version_bump()
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
    if face.thumbnail:
        face.thumbnail.delete(save=False)
    face.thumbnail.save("thumb.jpg", _chip_jpeg(best.chip), save=False)
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
    *, person: Person, uploads: Sequence, largest: bool = False, run_async: bool = False
) -> list[EnrolOutcome]:
    """Enrol each uploaded photo. Synchronously: refused photos are not kept. With ``run_async``
    the photos are stored as pending and encoded by a job (see jobs.services)."""
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
    return outcomes


def _safe_name(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"photo.{suffix if suffix.isalnum() else 'img'}"


def _face_store(person: Person, data: bytes, digest: str, filename: str) -> Face:
    face = Face(person=person, sha256=digest, status=Face.Status.PENDING)
    face.image.save(_safe_name(filename), ContentFile(data), save=False)
    face.save()
    return face


def face_encode_many(*, face_ids: Sequence[int], largest: bool = False) -> dict[int, str]:
    """(Re-)encode stored faces from their stored image, in engine batches.

    Returns {face_id: error message} for faces that could not be encoded. Idempotent: running it
    twice leaves the same embeddings.
    """
    errors: dict[int, str] = {}
    engine = pipeline()
    batch = max(1, engine.settings.max_batch_size)
    for start in range(0, len(face_ids), batch):
        faces = list(Face.objects.filter(pk__in=face_ids[start : start + batch]).select_related("person"))
        blobs = []
        for face in faces:
            try:
                with face.image.open("rb") as handle:
                    blobs.append(handle.read())
            except (OSError, ValueError) as exc:
                blobs.append(b"")
                errors[face.pk] = f"stored image unreadable: {exc}"
        results = engine.analyze_bytes(blobs)
        with transaction.atomic():
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
            index_version_bump()
    return errors


@transaction.atomic
def face_delete(*, face: Face) -> None:
    files = _face_files([face])
    face.delete()
    index_version_bump()
    transaction.on_commit(lambda: _delete_files(files))
