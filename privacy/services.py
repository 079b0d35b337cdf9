"""Gallery import: an archive written by privacy.exports.gallery_export (here or on another service)
becomes people, galleries and faces. Everything is checked before anything is written (the archive's
directory, the manifest, every photo's checksum and decoding, external_id conflicts); then one
transaction writes it all, and the files written are deleted again if it fails: nothing is ever
half-imported.

Same embedding model: the embeddings are stored as they came (the same bytes), the faces encoded.
Another model (or a face without an embedding): the faces are stored pending and a job encodes them
from their photos with this service's model, as an asynchronous enrolment does."""

from __future__ import annotations

import hashlib
import math
import posixpath
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from core.audit.services import audit_record
from core.errors import ServiceError
from face_engine.types import ImageError
from jobs.services import batch_generate_encodings
from people.engine import embedding_model_id, pipeline
from people.files import delete_files
from people.index_log import index_faces_changed
from people.models import Face, Gallery, Person
from privacy.archive import Limits, open_checked, read_entry
from privacy.manifest import MANIFEST, Manifest, manifest_parse, refused

CONFLICT_CHUNK = 500  # external ids per query (SQLite's bound on parameters)


def import_limits() -> Limits:
    return Limits(archive_bytes=settings.IMPORT_MAX_BYTES, entries=settings.IMPORT_MAX_ENTRIES,
                  entry_bytes=settings.FACE_ENGINE.max_upload_bytes, manifest_bytes=settings.IMPORT_MAX_MANIFEST_BYTES,
                  total_bytes=settings.IMPORT_MAX_UNCOMPRESSED_BYTES, ratio=settings.IMPORT_MAX_RATIO)


@dataclass
class ImportResult:
    model_id: str
    reencoded: bool  # the archive's embeddings were of another model: the photos are being encoded
    mapping: dict[str, int] = field(default_factory=dict)  # manifest ref → new person id
    faces: int = 0
    encoded: int = 0
    pending: int = 0
    galleries_created: list[str] = field(default_factory=list)
    galleries_reused: list[str] = field(default_factory=list)
    job_id: str | None = None


def gallery_import(*, upload, actor=None, request_id: str = "") -> ImportResult:
    limits = import_limits()
    with open_checked(upload, limits, small_entries=[MANIFEST]) as archive:
        names = {info.filename for info in archive.infolist()}
        if MANIFEST not in names:
            raise ServiceError("invalid_manifest", "The archive has no manifest.json: it is not a gallery archive.",
                               status_code=400, details={"where": "manifest.json"})
        manifest = manifest_parse(read_entry(archive, MANIFEST, limit=limits.manifest_bytes))
        missing = sorted(set(manifest.files()) - names)
        if missing:
            raise ServiceError("invalid_archive", f"The manifest names {missing[0]!r}, which the archive lacks.",
                               status_code=400, details={"entry": missing[0]})
        qualities = _qualities(manifest)
        sizes = _check_files(archive, manifest, limits)
        _check_conflicts(manifest)
        return _write(archive, manifest, sizes, qualities, limits, actor=actor, request_id=request_id)


def _qualities(manifest: Manifest) -> dict[tuple[int, int], dict]:
    """Each face's quality record as Face field values, checked against this service's Face fields."""
    fields = {f.name.removeprefix("quality_"): f for f in Face._meta.concrete_fields
              if f.name.startswith("quality_")}
    found = {}
    for i, person in enumerate(manifest.people):
        for j, face in enumerate(person.faces):
            values = {}
            for key, value in face.quality.items():
                where = f"people[{i}].faces[{j}].quality.{key[:50]}"
                model_field = fields.get(key)
                if model_field is None:
                    raise refused(where, "is not a quality measure this service knows.")
                if not _quality_ok(model_field, value):
                    raise refused(where, "has the wrong type.")
                values[model_field.name] = value
            found[(i, j)] = values
    return found


def _quality_ok(model_field, value) -> bool:
    if value is None:
        return model_field.null
    if isinstance(model_field, models.BooleanField):
        return isinstance(value, bool)
    if isinstance(model_field, models.FloatField):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(model_field, models.JSONField):
        return isinstance(value, list) and len(value) <= 20 and all(isinstance(v, str) and len(v) <= 100
                                                                    for v in value)
    return False


def _check_files(archive, manifest: Manifest, limits: Limits) -> dict[str, tuple[int, int]]:
    """Every file the manifest names: its checksum, and that it decodes as an image (the engine's
    decoder, with its limits). Returns each file's (width, height) as decoded (upright)."""
    engine = pipeline()
    sizes = {}
    for name, sha256 in manifest.files().items():
        data = read_entry(archive, name, limit=limits.entry_bytes)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ServiceError("checksum_mismatch", f"{name}: its bytes do not have the sha256 the manifest gives.",
                               status_code=400, details={"entry": name})
        try:
            pixels = engine.decode(data)
        except ImageError as exc:
            raise ServiceError("invalid_photo", f"{name}: {exc.message}", status_code=400,
                               details={"entry": name, "reason": exc.code}) from None
        sizes[name] = (int(pixels.shape[1]), int(pixels.shape[0]))
        del pixels
    return sizes


def _check_conflicts(manifest: Manifest) -> None:
    """409 listing every external_id of the archive already used by a person here."""
    wanted = {p.external_id: p.ref for p in manifest.people if p.external_id is not None}
    ids = list(wanted)
    taken = []
    for start in range(0, len(ids), CONFLICT_CHUNK):
        taken += Person.objects.filter(external_id__in=ids[start:start + CONFLICT_CHUNK]).values_list(
            "external_id", "pk")
    if taken:
        conflicts = [{"ref": wanted[external_id], "external_id": external_id, "person_id": pk}
                     for external_id, pk in sorted(taken)]
        raise ServiceError("external_id_conflict",
                           f"{len(conflicts)} external_id(s) of the archive are already used by people here "
                           f"(first: {conflicts[0]['external_id']!r}, person {conflicts[0]['person_id']}); "
                           "nothing was imported.", status_code=409, details={"conflicts": conflicts[:1000]})


def _write(archive, manifest: Manifest, sizes: dict, qualities: dict, limits: Limits, *, actor,
           request_id: str) -> ImportResult:
    same_model = manifest.model_id == embedding_model_id()
    result = ImportResult(model_id=manifest.model_id, reencoded=False)
    written: list[tuple] = []
    storage = Face._meta.get_field("image").storage

    def store(face_file, name: str, sha256: str, filename: str) -> None:
        data = read_entry(archive, name, limit=limits.entry_bytes)
        if hashlib.sha256(data).hexdigest() != sha256:  # checked already: the same archive, read again
            raise ServiceError("checksum_mismatch", f"{name}: changed while importing.", status_code=400)
        face_file.save(filename, ContentFile(data), save=False)
        written.append((storage, face_file.name))

    try:
        with transaction.atomic():
            galleries = _galleries(manifest, result)
            now = timezone.now()
            pending: list[int] = []
            imported: list[int] = []
            for i, item in enumerate(manifest.people):
                person = Person.objects.create(name=item.name, external_id=item.external_id, metadata=item.metadata)
                if item.galleries:
                    person.galleries.set([galleries[slug] for slug in item.galleries])
                result.mapping[item.ref] = person.pk
                for j, spec in enumerate(item.faces):
                    width, height = sizes[spec.photo]
                    face = Face(person=person, sha256=spec.sha256, image_width=width, image_height=height,
                                status=Face.Status.PENDING)
                    store(face.image, spec.photo, spec.sha256, "photo." + posixpath.splitext(spec.photo)[1][1:])
                    if same_model and spec.embedding is not None:
                        face.status, face.embedding, face.model, face.encoded_at = (
                            Face.Status.ENCODED, spec.embedding, manifest.model_id, now)
                        face.detection_score = spec.detection_score
                        if spec.box is not None:
                            face.box_top, face.box_right, face.box_bottom, face.box_left = (
                                spec.box["top"], spec.box["right"], spec.box["bottom"], spec.box["left"])
                        for name, value in qualities[(i, j)].items():
                            setattr(face, name, value)
                        if spec.thumbnail:
                            store(face.thumbnail, spec.thumbnail, spec.thumbnail_sha256, "thumb.jpg")
                    if face.status == Face.Status.PENDING:
                        # A restore takes the archive's word: a face encoded here (another model) is
                        # forced through the quality gate and the duplicate check, which record but
                        # do not refuse (the source service accepted it once); its largest face counts.
                        face.quality_forced = True
                    face.save()
                    imported.append(face.pk)
                    result.faces += 1
                    if face.status == Face.Status.ENCODED:
                        result.encoded += 1
                    else:
                        pending.append(face.pk)
            result.pending = len(pending)
            result.reencoded = bool(pending) and not same_model
            if pending:
                result.job_id = str(batch_generate_encodings(pending, largest=True, user=actor,
                                                             request_id=request_id).pk)
            index_faces_changed(imported)
            audit_record(actor=actor, action="gallery.import", target_type="person",
                         target_ids=sorted(result.mapping.values()), request_id=request_id,
                         details={"model_id": manifest.model_id, "same_model": same_model, "faces": result.faces,
                                  "encoded": result.encoded, "pending": result.pending, "job_id": result.job_id,
                                  "galleries_created": result.galleries_created,
                                  "galleries_reused": result.galleries_reused})
    except IntegrityError:
        delete_files(written)
        _check_conflicts(manifest)  # an external_id or a slug taken meanwhile: say which
        raise ServiceError("import_conflict", "The import collided with a concurrent write; nothing was imported. "
                           "Try again.", status_code=409) from None
    except BaseException:
        delete_files(written)
        raise
    return result


def _galleries(manifest: Manifest, result: ImportResult) -> dict[str, Gallery]:
    """The manifest's galleries by slug: the existing one of that slug is reused (its name and
    description kept), a missing one created."""
    found = {}
    for spec in manifest.galleries:
        gallery = Gallery.objects.filter(slug=spec.slug).first()
        if gallery is None:
            gallery = Gallery.objects.create(name=spec.name, slug=spec.slug, description=spec.description)
            result.galleries_created.append(spec.slug)
        else:
            result.galleries_reused.append(spec.slug)
        found[spec.slug] = gallery
    return found
