"""Writes to people, galleries and faces. Each write bumps the index version after commit and
leaves an audit record in its transaction (``actor`` and ``request_id`` say who asked and in which
request; management commands and tests leave them blank)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from core.audit.services import audit_record
from people.enrolment import (  # noqa: F401 - enrolment lives there; callers import it from here
    EnrolOutcome,
    face_encode_many,
    face_enroll,
    face_enroll_bytes,
    read_upload,
)
from people.erasure import person_erase
from people.files import delete_files as _delete_files
from people.files import face_files as _face_files
from people.index_log import index_faces_changed, index_gallery_removed
from people.models import Face, Gallery, Person

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
    index_gallery_removed(pk)
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
        person.galleries.set(galleries)  # logged for the index by people.index_log.memberships_changed
        details["galleries"] = sorted(g.pk for g in galleries)
    audit_record(actor=actor, action="person.update", target_type="person", target_ids=[person.pk],
                 details=details, request_id=request_id)
    return person


@transaction.atomic
def person_delete(*, person: Person, actor=None, request_id: str = "") -> None:
    """Erase the person: people.erasure.person_erase (every app's data about them, files after
    commit, the index in every process), then the row; the audit record counts what was removed."""
    pk = person.pk
    face_ids = list(person.faces.values_list("pk", flat=True))
    removed = person_erase(person=person)
    person.delete()
    audit_record(actor=actor, action="person.delete", target_type="person", target_ids=[pk],
                 details={"face_ids": face_ids, "removed": removed}, request_id=request_id)


# ---- faces -----------------------------------------------------------------------------------

@transaction.atomic
def face_delete(*, face: Face, actor=None, request_id: str = "") -> None:
    files = _face_files([face])
    pk = face.pk
    face.delete()
    index_faces_changed([pk])
    audit_record(actor=actor, action="face.delete", target_type="face", target_ids=[pk],
                 details={"person_id": face.person_id}, request_id=request_id)
    transaction.on_commit(lambda: _delete_files(files))
