"""Writes to recognition events: the live pipeline's upsert, the retention purge of crops and
embeddings, and the erasure of a deleted person's biometric data. Files are deleted after commit,
so a rolled-back write never loses a crop its row still points to."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.files import delete_after_commit, delete_stored
from events.hooks import event_recorded
from events.models import Event
from face_engine.types import EMBEDDING_BYTES, EMBEDDING_DIM
from people.models import Gallery, Person
from streams.models import Camera

logger = logging.getLogger(__name__)

PURGE_BATCH = 500
# A unique-uid race (two writers inserting the same new event) or a camera, gallery or user deleted
# between our existence check and the commit surfaces as an IntegrityError: a fresh attempt sees
# the row, or the deletion, and succeeds.
UPSERT_ATTEMPTS = 3


def _delete_after_commit(names: list[str]) -> None:
    delete_after_commit(Event._meta.get_field("crop").storage, names)


def _existing(model, pk: int | None, *, lock: bool = False) -> int | None:
    if pk is None:
        return None
    query = model.objects.filter(pk=pk)
    if lock:
        query = query.select_for_update()
    return query.values_list("pk", flat=True).first()


def event_upsert(
    *, uid: uuid.UUID, source: str, camera_id: int | None, source_name: str, user_id: int | None,
    gallery_id: int | None, track_id: int, kind: str, person_id: int | None, distance: float | None,
    confidence: float | None, threshold: float, first_seen: datetime, named_at: datetime, last_seen: datetime,
    closed_at: datetime | None, frames_seen: int, frames_recognised: int, face_box: dict, face_size: int,
    sharpness: float, embedding: bytes | None, crop_jpeg: bytes | None,
) -> Event:
    """Create the event ``uid`` or update it (idempotent: a retried write updates the same row).

    A camera, gallery, user or person that no longer exists is stored as NULL; for a deleted person
    no crop and no embedding are kept. ``crop_jpeg`` replaces the stored crop (None keeps it);
    ``embedding`` likewise (None keeps it)."""
    if embedding is not None:
        embedding = bytes(embedding)
        if len(embedding) != EMBEDDING_BYTES:
            raise ValueError(f"embedding must be {EMBEDDING_BYTES} bytes ({EMBEDDING_DIM} float32), "
                             f"not {len(embedding)}")
    if crop_jpeg is not None and bytes(crop_jpeg[:3]) != b"\xff\xd8\xff":
        raise ValueError("crop_jpeg is not a JPEG")
    if source not in Event.Source.values:
        raise ValueError(f"source must be one of {Event.Source.values}, not {source!r}")
    if kind not in Event.Kind.values:
        raise ValueError(f"kind must be one of {Event.Kind.values}, not {kind!r}")
    fields = {
        "source": source, "source_name": source_name, "track_id": track_id, "kind": kind,
        "distance": distance, "confidence": confidence, "threshold": threshold, "first_seen": first_seen,
        "named_at": named_at, "last_seen": last_seen, "closed_at": closed_at, "frames_seen": frames_seen,
        "frames_recognised": frames_recognised, "face_box": face_box, "face_size": face_size,
        "sharpness": sharpness,
    }
    refs = {"camera_id": camera_id, "gallery_id": gallery_id, "user_id": user_id, "person_id": person_id}
    for attempt in range(1, UPSERT_ATTEMPTS + 1):
        try:
            return _upsert_once(uid, fields, refs, embedding, crop_jpeg)
        except IntegrityError:
            if attempt == UPSERT_ATTEMPTS:
                raise
            logger.info("event %s: write conflicted, retrying", uid)
    raise AssertionError("unreachable")


def _upsert_once(uid: uuid.UUID, fields: dict, refs: dict, embedding: bytes | None,
                 crop_jpeg: bytes | None) -> Event:
    new_name = ""
    try:
        with transaction.atomic():
            event = Event.objects.select_for_update().filter(uid=uid).first() or Event(uid=uid)
            was_open = event.pk is not None and event.closed_at is None
            phase = "opened" if event.pk is None else "closed" if was_open and fields["closed_at"] else "updated"
            # The person's row is locked so that its deletion (which erases its events' biometric
            # data under the same lock) runs either wholly before or wholly after this write.
            person_id = _existing(Person, refs["person_id"], lock=True)
            values = {
                **fields,
                "camera_id": _existing(Camera, refs["camera_id"]),
                "gallery_id": _existing(Gallery, refs["gallery_id"]),
                "user_id": _existing(get_user_model(), refs["user_id"]),
                "person_id": person_id,
            }
            for name, value in values.items():
                setattr(event, name, value)
            stale: list[str] = []
            if refs["person_id"] is not None and person_id is None:
                # Deleted meanwhile: the crop and the embedding would be that person's biometric data.
                if event.crop:
                    stale.append(event.crop.name)
                event.crop = ""
                event.embedding = None
            else:
                if embedding is not None:
                    event.embedding = embedding
                if crop_jpeg is not None:
                    if event.crop:
                        stale.append(event.crop.name)
                    event.crop.save("crop.jpg", ContentFile(bytes(crop_jpeg)), save=False)
                    new_name = event.crop.name
            event.save()
            # A row whose file had vanished gets its old name back: never delete the new crop.
            _delete_after_commit([name for name in stale if name != new_name])
            transaction.on_commit(lambda: event_recorded.send_robust(sender=Event, event=event, phase=phase))
    except BaseException:
        if new_name:
            delete_stored([(Event._meta.get_field("crop").storage, new_name)])  # its transaction did not commit
        raise
    return event


def event_crops_purge(*, now: datetime | None = None) -> int:
    """Delete the crops and embeddings of events last seen more than EVENT_RETENTION_DAYS days ago
    (0 keeps them); returns how many events were purged. One bounded transaction per batch."""
    days = settings.EVENT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    stored = Q(embedding__isnull=False) | ~Q(crop="")
    purged = 0
    while True:
        with transaction.atomic():
            rows = list(Event.objects.select_for_update().filter(stored, last_seen__lt=cutoff)
                        .order_by("id").values_list("id", "crop")[:PURGE_BATCH])
            if not rows:
                return purged
            # Purged rows no longer match ``stored``, so every batch makes progress.
            purged += Event.objects.filter(pk__in=[pk for pk, _ in rows]).update(crop="", embedding=None)
            _delete_after_commit([name for _, name in rows if name])


def events_erase_person(*, person_id: int) -> int:
    """Delete the crops and embeddings of a person's events (their biometric data); the events
    keep their rows. Runs in the caller's transaction (the person's deletion); returns the count."""
    with transaction.atomic():
        # Serialises with event_upsert, which locks the person's row while it writes.
        Person.objects.select_for_update().filter(pk=person_id).values_list("pk", flat=True).first()
        events = Event.objects.filter(Q(embedding__isnull=False) | ~Q(crop=""), person_id=person_id)
        names = [name for name in events.values_list("crop", flat=True) if name]
        erased = events.update(crop="", embedding=None)
        _delete_after_commit(names)
    return erased


def person_events_erase(*, person_id: int) -> dict[str, int]:
    """The events' part of a person's erasure (people.hooks.person_erasing): their crops and
    embeddings go (files after commit) and every event of theirs is unlinked from them now, with
    ``updated_at`` moved so that live feeds send the event again without the name. The rows stay,
    anonymous: a face was seen there then. Retained MQTT names of cameras that last saw them are
    cleared after commit. Returns the counts for the erasure's audit record."""
    from events import mqtt  # paho is imported only where events are published or erased

    with transaction.atomic():
        crops = Event.objects.filter(person_id=person_id).exclude(crop="").count()
        embeddings = Event.objects.filter(person_id=person_id, embedding__isnull=False).count()
        events_erase_person(person_id=person_id)
        cameras = mqtt.cameras_last_seeing(person_id=person_id)
        unlinked = Event.objects.filter(person_id=person_id).update(person=None, updated_at=timezone.now())
        dropped = mqtt.person_forget(person_id=person_id, cameras=cameras)
    return {"events": unlinked, "event_crops": crops, "event_embeddings": embeddings, **dropped}


def event_crop_delete(*, event: Event) -> None:
    """After an event row is deleted (admin, queryset): its crop file goes after commit."""
    if event.crop:
        _delete_after_commit([event.crop.name])
