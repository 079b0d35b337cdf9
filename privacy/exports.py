"""Archives out: one person's data (the right of access) and a gallery of people (a backup another
service can import). Both are streamed (privacy.archive.zip_stream): rows are read when the export
starts, files while the archive is sent; each export leaves an audit record (ids and counts).

Embeddings travel as base64 of their stored bytes, 128 little-endian float32 (never pickled)."""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from core.audit.services import audit_record
from events.models import Event
from events.serializers import EventSerializer
from people.engine import embedding_model_id
from people.models import Face, Gallery, Person
from privacy.archive import Entry, file_chunks, zip_stream
from privacy.manifest import FORMAT, MANIFEST, VERSION, embedding_text

logger = logging.getLogger(__name__)
PHOTO_SUFFIXES = {"jpg", "jpeg", "png", "webp", "bmp", "gif"}
BOX_FIELDS = ("top", "right", "bottom", "left")


def _json(value) -> bytes:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, indent=1).encode()


def _suffix(name: str) -> str:
    suffix = posixpath.splitext(name)[1].lstrip(".").lower()
    return suffix if suffix in PHOTO_SUFFIXES else "jpg"


def _safe_chunks(field) -> Iterator[bytes]:
    """A stored file's chunks; one that cannot be read (gone from storage) ends the entry, logged,
    instead of breaking the archive being sent."""
    try:
        yield from file_chunks(field)
    except OSError:
        logger.warning("export: %s could not be read", field.name)


def quality_fields() -> list[str]:
    """Face's quality record columns (quality_*), whichever this service's version has."""
    return [f.name for f in Face._meta.concrete_fields if f.name.startswith("quality_")]


def _quality(face: Face) -> dict:
    return {name.removeprefix("quality_"): getattr(face, name) for name in quality_fields()}


# ---- one person (access) -----------------------------------------------------------------------

def person_export(*, person: Person, actor=None, request_id: str = "") -> Iterator[bytes]:
    """person.json (the person, their galleries, their faces with boxes, quality and embeddings),
    the photos and thumbnails, events.json with the crops, and related/<app>.<model>.json for each
    other app's rows about the person (negatives, sightings, clusters), with their files."""
    faces = list(Face.objects.filter(person=person).order_by("id"))
    events = list(Event.objects.filter(person=person).select_related("person", "gallery").order_by("id"))
    related = _related_rows(person)
    files: list[Entry] = []
    face_rows = []
    for face in faces:
        row = {"id": face.pk, "photo": None, "thumbnail": None, "sha256": face.sha256, "status": face.status,
               "error": face.error, "box": face.box, "image_width": face.image_width,
               "image_height": face.image_height, "detection_score": face.detection_score, "model": face.model,
               "encoded_at": face.encoded_at, "created_at": face.created_at, "quality": _quality(face),
               "embedding": embedding_text(face.embedding) if face.embedding else None}
        if face.image:
            row["photo"] = f"faces/{face.pk}/photo.{_suffix(face.image.name)}"
            files.append(Entry(row["photo"], lambda f=face.image: _safe_chunks(f), compress=False))
        if face.thumbnail:
            row["thumbnail"] = f"faces/{face.pk}/thumbnail.jpg"
            files.append(Entry(row["thumbnail"], lambda f=face.thumbnail: _safe_chunks(f), compress=False))
        face_rows.append(row)
    event_rows = []
    for event in events:
        row = {**EventSerializer(event).data, "crop": None,
               "embedding": embedding_text(event.embedding) if event.embedding else None}
        if event.crop:
            row["crop"] = f"events/{event.pk}.jpg"
            files.append(Entry(row["crop"], lambda f=event.crop: _safe_chunks(f), compress=False))
        event_rows.append(row)
    document = {
        "format": "facerec-person", "version": 1, "exported_at": timezone.now(), "model_id": embedding_model_id(),
        "person": {"id": person.pk, "name": person.name, "external_id": person.external_id,
                   "metadata": person.metadata, "created_at": person.created_at, "updated_at": person.updated_at,
                   "galleries": [{"id": g.pk, "slug": g.slug, "name": g.name} for g in person.galleries.all()]},
        "faces": face_rows,
    }
    entries = [Entry("README.txt", lambda: README.encode()), Entry("person.json", lambda: _json(document)),
               Entry("events.json", lambda: _json(event_rows))]
    counts = {"faces": len(faces), "events": len(events)}
    for label, rows, row_files in related:
        entries.append(Entry(f"related/{label}.json", lambda rows=rows: _json(rows)))
        files += row_files
        counts[label] = len(rows)
    audit_record(actor=actor, action="person.export", target_type="person", target_ids=[person.pk],
                 details=counts, request_id=request_id)
    return zip_stream([*entries, *files])


README = """This archive holds what the face recognition service stores about one person.

person.json   the person (name, external id, metadata, galleries) and their enrolled faces: the box of
              the face in the photo, its quality record, and its embedding (base64 of 128 float32,
              little-endian), with the photo (faces/<id>/photo.*) and the face thumbnail.
events.json   each time a camera or a browser stream recognised them, with the best face's crop
              (events/<id>.jpg) and its embedding.
related/      rows of other parts of the service about them (corrections, kept sightings, named
              unknown identities), with their files.
"""


def _related_rows(person: Person) -> list[tuple[str, list[dict], list[Entry]]]:
    """(label, rows, files) for every other model with a foreign key to Person (found by reading the
    models, so a new app's rows are exported without a change here)."""
    found = []
    for model in apps.get_models():
        if model in (Face, Event) or model._meta.auto_created or model._meta.proxy:
            continue
        links = [f for f in model._meta.concrete_fields
                 if isinstance(f, models.ForeignKey) and f.related_model is Person]
        if not links:
            continue
        query = models.Q()
        for link in links:
            query |= models.Q(**{link.attname: person.pk})
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        rows, files = [], []
        for obj in model.objects.filter(query).order_by("pk"):
            row = {}
            for f in model._meta.concrete_fields:
                value = getattr(obj, f.attname)
                if isinstance(f, models.BinaryField):
                    value = embedding_text(value) if value else None
                elif isinstance(f, models.FileField):
                    value = None
                    field_file = getattr(obj, f.name)
                    if field_file:
                        value = f"related/{label}/{obj.pk}-{f.name}.{_suffix(field_file.name)}"
                        files.append(Entry(value, lambda ff=field_file: _safe_chunks(ff), compress=False))
                row[f.attname] = value
            rows.append(row)
        if rows:
            found.append((label, rows, files))
    return found


# ---- a gallery of people (backup, transfer) ----------------------------------------------------

def gallery_export(*, gallery: Gallery | None, actor=None, request_id: str = "") -> Iterator[bytes]:
    """The manifest (format facerec-gallery, version 1) and the photos of ``gallery``'s people (None:
    every person and every gallery). With one gallery, only that gallery and the people's membership
    of it are written. Photos stream first; the manifest comes last, with the checksum of each photo
    as sent (a face whose file cannot be read is left out of it, and logged)."""
    people = Person.objects.order_by("id").prefetch_related("galleries")
    galleries = [gallery] if gallery is not None else list(Gallery.objects.order_by("slug"))
    if gallery is not None:
        people = people.filter(galleries=gallery)
    people = list(people)
    faces: dict[int, list[Face]] = {}
    for face in Face.objects.filter(person__in=people).order_by("id"):
        faces.setdefault(face.person_id, []).append(face)
    model_id = embedding_model_id()
    slugs = {g.slug for g in galleries}
    manifest = {
        "format": FORMAT, "version": VERSION, "model_id": model_id, "exported_at": timezone.now().isoformat(),
        "galleries": [{"slug": g.slug, "name": g.name, "description": g.description} for g in galleries],
        "people": [],
    }
    audit_record(actor=actor, action="gallery.export", target_type="person", target_ids=[p.pk for p in people],
                 details={"gallery_id": gallery.pk if gallery else None,
                          "faces": sum(len(v) for v in faces.values())}, request_id=request_id)

    def entries() -> Iterator[Entry]:
        number = 0
        for person in people:
            rows = []
            for face in faces.get(person.pk, []):
                if not face.image:
                    continue
                number += 1
                row = _face_row(face, model_id)
                photo = _Hashed(face.image)
                row["photo"] = f"photos/{number}.{_suffix(face.image.name)}"
                yield Entry(row["photo"], photo.chunks, compress=False)
                if photo.failed:
                    continue
                row["sha256"] = photo.sha256
                if face.thumbnail:
                    thumbnail = _Hashed(face.thumbnail)
                    name = f"thumbnails/{number}.jpg"
                    yield Entry(name, thumbnail.chunks, compress=False)
                    if not thumbnail.failed:
                        row["thumbnail"], row["thumbnail_sha256"] = name, thumbnail.sha256
                rows.append(row)
            manifest["people"].append({
                "ref": str(person.pk), "name": person.name, "external_id": person.external_id,
                "metadata": person.metadata, "galleries": sorted(g.slug for g in person.galleries.all()
                                                                 if g.slug in slugs),
                "faces": rows,
            })
        yield Entry(MANIFEST, lambda: _json(manifest))

    return zip_stream(entries())


def _face_row(face: Face, model_id: str) -> dict:
    # An embedding of another model (not re-encoded yet) is left out: the importer encodes the photo.
    current = face.status == Face.Status.ENCODED and face.embedding and face.model == model_id
    return {"photo": None, "sha256": None, "box": face.box if current else None,
            "detection_score": face.detection_score if current else None,
            "embedding": embedding_text(face.embedding) if current else None,
            "quality": _quality(face) if current else {}}


class _Hashed:
    """A stored file's chunks, hashed as they are sent. A file that cannot be read is sent empty
    and ``failed`` is set (its face is then left out of the manifest)."""

    def __init__(self, field) -> None:
        import hashlib

        self.field, self.failed, self._hash = field, False, hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        try:
            for chunk in file_chunks(self.field):
                self._hash.update(chunk)
                yield chunk
        except OSError:
            logger.warning("gallery export: %s could not be read; its face is left out", self.field.name)
            self.failed = True
