"""Corrections of what recognition said about a face kept as an event or a sighting.

"Not X" keeps the face as a negative example of X (the index then stops naming X for faces
closer to it than to X's own faces), clears the name and hands the face to unknown clustering.
"Is Y" enrols the stored crop for Y through the quality gate and names the event or sighting Y.
Both are audited in their transaction; negatives bump the index version (they change matches).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.db import transaction

from core.audit.services import audit_record
from core.errors import ServiceError
from core.files import delete_after_commit, delete_stored
from corrections.index_log import index_negatives_changed
from corrections.models import NegativeFace
from events.models import Event
from face_engine.types import EMBEDDING_BYTES
from people import services as people_services
from people.engine import embedding_model_id
from people.models import Face, Person
from unknowns import services as unknowns
from unknowns.models import Sighting

logger = logging.getLogger(__name__)


@dataclass
class Source:
    """The corrected face: exactly one of an event or a sighting, locked for the correction."""

    event: Event | None = None
    sighting: Sighting | None = None

    @property
    def kind(self) -> str:
        return NegativeFace.Source.EVENT if self.event is not None else NegativeFace.Source.SIGHTING

    @property
    def row(self) -> Event | Sighting:
        row = self.event if self.event is not None else self.sighting
        assert row is not None
        return row

    @property
    def named_id(self) -> int | None:
        return self.event.person_id if self.event is not None else self.sighting.matched_person_id

    def ids(self) -> dict[str, int | None]:
        return {"event_id": self.event.pk if self.event else None,
                "sighting_id": self.sighting.pk if self.sighting else None}

    def crop_bytes(self) -> bytes | None:
        """The stored crop, or None when there is none (purged, erased) or it cannot be read."""
        crop = self.row.crop
        if not crop:
            return None
        try:
            with crop.open("rb") as handle:
                return handle.read()
        except OSError:
            logger.warning("%s %s: crop %s unreadable", self.kind, self.row.pk, crop.name)
            return None


def _source(event: Event | None, sighting: Sighting | None) -> Source:
    if (event is None) == (sighting is None):
        raise ServiceError("invalid", "Send exactly one of event or sighting.",
                           details={"non_field_errors": ["Send exactly one of event or sighting."]})
    if event is not None:
        locked = Event.objects.select_for_update().filter(pk=event.pk).first()
        if locked is None:
            raise ServiceError("unknown_event", f"No event with id {event.pk}.", status_code=400)
        if locked.closed_at is None:
            # The live pipeline still writes this event's name: a correction would be overwritten.
            raise ServiceError("event_open", f"Event {locked.pk} is still in progress; correct it once it has "
                               "closed.", status_code=422)
        return Source(event=locked)
    assert sighting is not None
    found = Sighting.objects.select_for_update().filter(pk=sighting.pk).first()
    if found is None:
        raise ServiceError("unknown_sighting", f"No sighting with id {sighting.pk}.", status_code=400)
    return Source(sighting=found)


@dataclass
class NotResult:
    negative: NegativeFace
    created: bool  # False: this face was already a negative of that person
    cleared: bool  # the event or sighting was named after that person, and no longer is
    sighting_id: int | None = None  # the unknown sighting the face now is (clustering)
    cluster_id: int | None = None


def correction_not(*, person: Person | None = None, event: Event | None = None, sighting: Sighting | None = None,
                   actor=None, request_id: str = "") -> NotResult:
    """"This face is not ``person``" (by default, not whom it was named after). Any person may be
    named: saying the face is not someone it was never named after still keeps the negative (a
    stranger who comes close to X without being named yet), and then leaves the name alone."""
    written: list[str] = []
    try:
        with transaction.atomic():
            return _correction_not(person, event, sighting, actor, request_id, written)
    except BaseException:
        _delete_files(written)  # the crop copy of a transaction that did not commit
        raise


def _correction_not(person: Person | None, event: Event | None, sighting: Sighting | None, actor,
                    request_id: str, written: list[str]) -> NotResult:
    source = _source(event, sighting)
    if person is None:
        if source.named_id is None:
            raise ServiceError("no_named_person", f"This {source.kind} was not named after anyone; say which "
                               "person it is not (person).", status_code=422)
        person = Person.objects.get(pk=source.named_id)
    embedding = bytes(source.row.embedding or b"")
    if len(embedding) != EMBEDDING_BYTES:
        raise ServiceError("no_face_data", f"The {source.kind}'s face embedding is gone (purged by retention or "
                           "erased): it cannot be kept as a negative.", status_code=422)
    existing = NegativeFace.objects.filter(person=person, **{source.kind: source.row}).first()
    negative = existing or _negative_store(person, source, embedding, actor, written)
    named = source.named_id
    cleared = named == person.pk
    result = NotResult(negative=negative, created=existing is None, cleared=cleared)
    if cleared:
        _unname(source, person, result)
    if existing is None:
        index_negatives_changed([negative.pk])
    audit_record(actor=actor, action="correction.not", target_type="person", target_ids=[person.pk],
                 request_id=request_id,
                 details={**source.ids(), "negative_id": negative.pk, "created": result.created,
                          "cleared": cleared, "named_person_id": named,
                          "unknown_sighting_id": result.sighting_id})
    return result


def _negative_store(person: Person, source: Source, embedding: bytes, actor, written: list[str]) -> NegativeFace:
    negative = NegativeFace(person=person, embedding=embedding, model=embedding_model_id(), source=source.kind,
                            created_by=actor if actor is not None and actor.is_authenticated else None,
                            **{source.kind: source.row})
    crop = source.crop_bytes()
    if crop:
        negative.crop.save("crop.jpg", ContentFile(crop), save=False)
        written.append(negative.crop.name)
    negative.save()
    return negative


def _unname(source: Source, person: Person, result: NotResult) -> None:
    """The face is now unknown: no name, and a sighting for unknown clustering."""
    if source.event is not None:
        event = source.event
        event.person, event.kind = None, Event.Kind.UNKNOWN
        event.save(update_fields=["person", "kind", "updated_at"])
        sighting = unknowns.sighting_from_event(event)  # the event's sighting, made now or before
        if sighting is not None and sighting.matched_person_id == person.pk:
            sighting.matched_person = None
            sighting.save(update_fields=["matched_person"])
    else:
        sighting = source.sighting
        assert sighting is not None
        sighting.matched_person = None
        sighting.save(update_fields=["matched_person"])
    if sighting is not None:
        cluster = unknowns.sighting_cluster(sighting)
        result.sighting_id = sighting.pk
        result.cluster_id = cluster.pk if cluster is not None else None


@dataclass
class IsResult:
    face: Face
    duplicate: bool  # this crop was already one of the person's faces
    previous_person_id: int | None
    warnings: list = field(default_factory=list)  # what ``force`` overrode (quality, possible duplicate)


@transaction.atomic
def correction_is(*, person: Person, event: Event | None = None, sighting: Sighting | None = None,
                  force: bool = False, actor=None, request_id: str = "") -> IsResult:
    """"This face is ``person``": its stored crop is enrolled for them through the quality gate
    and the duplicate check (``force`` overrides both; their refusal is this call's 422), then the
    event or sighting is named after them."""
    source = _source(event, sighting)
    crop = source.crop_bytes()
    if crop is None:
        raise ServiceError("no_crop", f"The {source.kind}'s face crop is gone (purged by retention or erased): "
                           "there is nothing to enrol.", status_code=422)
    outcome, = people_services.face_enroll_bytes(
        person=person, blobs=[(f"{source.kind}-{source.row.pk}.jpg", crop)], force=force, largest=True,
        actor=actor, request_id=request_id)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.face is not None
    previous = source.named_id
    if source.event is not None:
        event = source.event
        # The distance and confidence were the match's; this name comes from a person, not a match.
        event.person, event.kind, event.distance, event.confidence = person, Event.Kind.KNOWN, None, None
        event.save(update_fields=["person", "kind", "distance", "confidence", "updated_at"])
    else:
        found = source.sighting
        assert found is not None
        found.matched_person = person
        found.save(update_fields=["matched_person"])
    warnings = list(getattr(outcome, "warnings", None) or [])
    audit_record(actor=actor, action="correction.is", target_type="person", target_ids=[person.pk],
                 request_id=request_id,
                 details={**source.ids(), "face_id": outcome.face.pk, "duplicate": outcome.duplicate,
                          "previous_person_id": previous, "force": force,
                          "warnings": [w.get("code") if isinstance(w, dict) else str(w) for w in warnings]})
    return IsResult(face=outcome.face, duplicate=outcome.duplicate, previous_person_id=previous, warnings=warnings)


# ---- negatives ---------------------------------------------------------------------------------

@transaction.atomic
def negative_delete(*, negative: NegativeFace, actor=None, request_id: str = "") -> None:
    """Undo a "not X": the negative goes (its crop after commit, see signals). The event or
    sighting it came from keeps its current name: naming it again is another correction."""
    pk, person_id = negative.pk, negative.person_id
    details = {"person_id": person_id, "event_id": negative.event_id, "sighting_id": negative.sighting_id}
    negative.delete()
    index_negatives_changed([pk])
    audit_record(actor=actor, action="correction.undo", target_type="negative_face", target_ids=[pk],
                 details=details, request_id=request_id)


def negatives_erase_person(*, person: Person) -> int:
    """Delete ``person``'s negatives (their crops after commit): the person_erasing receiver."""
    with transaction.atomic():
        removed = []
        for negative in NegativeFace.objects.filter(person=person):
            removed.append(negative.pk)
            negative.delete()  # post_delete: the crop goes after commit
        index_negatives_changed(removed)
    return len(removed)


def _delete_files(names: Sequence[str]) -> None:
    delete_stored((NegativeFace._meta.get_field("crop").storage, name) for name in names)


def negative_crop_delete(*, negative: NegativeFace) -> None:
    """After a negative's row is deleted (any path): its crop file goes after commit."""
    if negative.crop:
        delete_after_commit(negative.crop.storage, [negative.crop.name])
