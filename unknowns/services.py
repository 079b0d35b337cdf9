"""Writes to unknown identities: sightings (an unknown event's best face, a recognition's kept face),
their incremental clustering, and what staff do with a cluster (name, merge, split, discard).

Every write is atomic; the operations on clusters leave an audit record in their transaction; files
are deleted after commit (a rolled-back write never loses a crop its row still points to), and a
crop written for a transaction that did not commit is deleted at once.

Clustering (face_engine.clustering): a face joins the open cluster whose faces are within
UNKNOWN_CLUSTER_JOIN_DISTANCE on average, else starts one. The chosen cluster's row is locked
(select_for_update on PostgreSQL; SQLite serialises writers), so concurrent writers never lose a
count. A discarded cluster is a tombstone: a face that joins it is kept as a row without crop or
embedding, so a poster on a wall is recognised as discarded instead of forming a new cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from core.audit.services import audit_record
from core.errors import ServiceError
from core.files import delete_stored
from events.models import Event
from face_engine.clustering import candidate_clusters, centroid_add, centroid_of, pick_cluster
from face_engine.types import EMBEDDING_BYTES
from people.models import Gallery, Person, embedding_bytes, embedding_matrix
from unknowns.models import Sighting, UnknownCluster

logger = logging.getLogger(__name__)

# Faces of one candidate cluster read to measure the mean distance (its most recent ones).
MAX_MEMBERS = 200
ATTEMPTS = 3  # a new cluster's number taken concurrently (unique): a fresh attempt takes the next
JOINABLE = (UnknownCluster.State.OPEN, UnknownCluster.State.DISCARDED)


def _crops():
    return Sighting._meta.get_field("crop").storage


def delete_files(names: Sequence[str]) -> None:
    delete_stored((_crops(), name) for name in names)


def delete_after_commit(names: Iterable[str]) -> None:
    names = [name for name in names if name]
    if names:
        transaction.on_commit(lambda: delete_files(names))


def _save_new(sighting: Sighting, crop_jpeg: bytes | None) -> Sighting:
    """Save a new sighting with its crop; the crop goes if the save does not commit."""
    written = ""
    try:
        with transaction.atomic():
            if crop_jpeg:
                sighting.crop.save("crop.jpg", ContentFile(bytes(crop_jpeg)), save=False)
                written = sighting.crop.name
            sighting.save()
    except BaseException:
        if written:
            delete_files([written])
        raise
    return sighting


def sighting_from_event(event: Event) -> Sighting | None:
    """The event's sighting: a copy of its best face (crop and embedding), made once per event (a
    second call returns the same row). None when the event has no embedding (purged, erased)."""
    existing = Sighting.objects.filter(event=event).first()
    if existing is not None:
        return existing
    embedding = bytes(event.embedding or b"")
    if len(embedding) != EMBEDDING_BYTES:
        return None
    crop = b""
    if event.crop:
        try:
            with event.crop.open("rb") as handle:
                crop = handle.read()
        except OSError:  # the row points to a file gone from storage: the sighting has no crop
            logger.warning("event %s: crop %s unreadable", event.pk, event.crop.name)
    sighting = Sighting(
        source=Sighting.Source.EVENT, event=event, camera_id=event.camera_id, source_name=event.source_name,
        seen_at=event.first_seen, embedding=embedding, box=event.face_box or {}, face_size=event.face_size,
        sharpness=event.sharpness, matched_person_id=event.person_id, distance=event.distance,
    )
    try:
        return _save_new(sighting, crop)
    except IntegrityError:  # made concurrently for the same event (event is unique)
        return Sighting.objects.filter(event=event).first()


def sighting_record(
    *, embedding, crop_jpeg: bytes | None, box: dict, face_size: int, sharpness: float, source_name: str,
    seen_at: datetime | None = None, camera_id: int | None = None, matched_person_id: int | None = None,
    distance: float | None = None,
) -> Sighting:
    """A sighting from a recognition request's face (the request asked to keep it)."""
    if crop_jpeg is not None and bytes(crop_jpeg[:3]) != b"\xff\xd8\xff":
        raise ValueError("crop_jpeg is not a JPEG")
    sighting = Sighting(
        source=Sighting.Source.RECOGNITION, camera_id=camera_id, source_name=source_name[:200],
        seen_at=seen_at or timezone.now(), embedding=embedding_bytes(embedding), box=box, face_size=face_size,
        sharpness=sharpness, matched_person_id=matched_person_id, distance=distance,
    )
    return _save_new(sighting, crop_jpeg)


# ---- clustering ----------------------------------------------------------------------------------

def _members(cluster_id: int, centroid: np.ndarray) -> np.ndarray:
    """The embeddings of the cluster's most recent faces; its centroid when retention (or a
    discard) left none: the mean distance is then the distance to the centroid."""
    blobs = list(Sighting.objects.filter(cluster_id=cluster_id, embedding__isnull=False)
                 .order_by("-seen_at", "-id").values_list("embedding", flat=True)[:MAX_MEMBERS])
    return embedding_matrix(blobs) if blobs else centroid.reshape(1, -1)


def _next_number() -> int:
    return (UnknownCluster.objects.aggregate(top=Max("number"))["top"] or 0) + 1


def sighting_cluster(sighting: Sighting) -> UnknownCluster | None:
    """Put an unknown sighting into its cluster (the nearest open one within the join distance, or
    a new one) and update the cluster's count, first and last seen and centroid. A sighting already
    clustered keeps its cluster; one named after a person (matched_person) or without an embedding
    is not clustered (None). Joining a discarded cluster drops the sighting's crop and embedding."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _cluster_once(sighting.pk)
        except IntegrityError:  # two new clusters took the same number: the next attempt takes another
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _cluster_once(sighting_id: int) -> UnknownCluster | None:
    sighting = Sighting.objects.select_for_update().filter(pk=sighting_id).first()
    if sighting is None or sighting.matched_person_id is not None:
        return None
    if sighting.cluster_id is not None:
        return UnknownCluster.objects.get(pk=sighting.cluster_id)
    vector = sighting.embedding_array()
    if vector is None:
        return None
    join = settings.UNKNOWN_CLUSTER_JOIN_DISTANCE
    rows = list(UnknownCluster.objects.filter(state__in=JOINABLE, centroid__isnull=False)
                .values_list("id", "centroid"))
    centroids = embedding_matrix([c for _, c in rows])
    near = candidate_clusters(vector, centroids, join_distance=join)
    choice = pick_cluster(vector, [_members(rows[i][0], centroids[i]) for i in near], join_distance=join)
    cluster = None
    if choice.index is not None:
        # Locked, then checked again: it may have been named, merged away or deleted meanwhile.
        cluster = UnknownCluster.objects.select_for_update().filter(
            pk=rows[near[choice.index]][0], state__in=JOINABLE).first()
    if cluster is None:
        cluster = UnknownCluster.objects.create(number=_next_number())
    if cluster.state == UnknownCluster.State.DISCARDED:
        delete_after_commit([sighting.crop.name] if sighting.crop else [])
        sighting.crop, sighting.embedding = "", None
    else:
        mean = centroid_add(cluster.centroid_array(), cluster.sighting_count, vector)
        cluster.centroid = mean.astype("<f4").tobytes()
    cluster.sighting_count += 1
    cluster.first_seen = min(filter(None, [cluster.first_seen, sighting.seen_at]))
    cluster.last_seen = max(filter(None, [cluster.last_seen, sighting.seen_at]))
    cluster.save()
    sighting.cluster = cluster
    sighting.save(update_fields=["cluster", "crop", "embedding"])
    return cluster


def _refresh(cluster: UnknownCluster, *, centroid: np.ndarray | None = None) -> None:
    """Recount a cluster from its sightings (after a merge or a split); ``centroid`` when known,
    else the mean of the embeddings it still holds (kept as it was when it holds none)."""
    sightings = Sighting.objects.filter(cluster=cluster)
    cluster.sighting_count = sightings.count()
    cluster.first_seen = sightings.order_by("seen_at").values_list("seen_at", flat=True).first()
    cluster.last_seen = sightings.order_by("-seen_at").values_list("seen_at", flat=True).first()
    if centroid is None:
        centroid = centroid_of(embedding_matrix(list(sightings.filter(embedding__isnull=False)
                                            .values_list("embedding", flat=True))))
    if centroid is not None:
        cluster.centroid = np.asarray(centroid, dtype="<f4").tobytes()
    cluster.save()


# ---- what staff do with a cluster ---------------------------------------------------------------

def _locked(cluster: UnknownCluster, *, open_only: bool = True) -> UnknownCluster:
    found = UnknownCluster.objects.select_for_update().filter(pk=cluster.pk).first()
    if found is None:
        raise ServiceError("not_found", f"No unknown cluster with id {cluster.pk}.", status_code=404)
    if open_only and found.state != UnknownCluster.State.OPEN:
        raise ServiceError(f"cluster_{found.state}", f"{found} is already {found.state}"
                           + (f" (person {found.person_id})." if found.person_id else "."), status_code=409)
    return found


def _audit(action: str, clusters: Sequence[int], details: dict, actor, request_id: str) -> None:
    audit_record(actor=actor, action=action, target_type="unknown_cluster", target_ids=list(clusters),
                 details=details, request_id=request_id)


def best_sightings(cluster: UnknownCluster, limit: int) -> list[Sighting]:
    """The cluster's best faces to show or enrol: those with a crop, sharpest and largest first."""
    rows = list(Sighting.objects.filter(cluster=cluster).exclude(crop="").order_by("-seen_at", "-id")[:1000])
    rows.sort(key=lambda s: (s.quality, s.face_size, s.pk), reverse=True)
    return rows[:limit]


@dataclass
class NameResult:
    cluster: UnknownCluster
    person: Person
    person_created: bool
    faces: list[dict] = field(default_factory=list)  # per face tried: sighting_id, face_id or error
    enrolled: int = 0
    events: int = 0


def cluster_name(
    *, cluster: UnknownCluster, person: Person | None = None, name: str | None = None,
    galleries: Iterable[Gallery] = (), force: bool = False, actor=None, request_id: str = "",
) -> NameResult:
    """Give a cluster a name: an existing ``person`` or a new one (``name``, ``galleries``). Its best
    faces (at most UNKNOWN_NAME_MAX_FACES) are enrolled through the quality gate and duplicate check
    (``force`` overrides them); a face refused is reported, and the naming is refused (422, nothing
    written) only when no face was enrolled. The cluster's past events then name the person (kind
    "known"): they were that person, now that the service knows it."""
    from people.services import face_enroll_bytes, person_create

    if (person is None) == (name is None):
        raise ServiceError("invalid", "Send exactly one of person or name.",
                           details={"non_field_errors": ["Send exactly one of person or name."]})
    with transaction.atomic():
        cluster = _locked(cluster)
        best = best_sightings(cluster, settings.UNKNOWN_NAME_MAX_FACES)
        blobs, tried = [], []
        for sighting in best:
            try:
                with sighting.crop.open("rb") as handle:
                    blobs.append((f"sighting-{sighting.pk}.jpg", handle.read()))
                tried.append(sighting)
            except OSError:
                logger.warning("sighting %s: crop %s unreadable", sighting.pk, sighting.crop.name)
        if not blobs:
            raise ServiceError("no_faces_to_enrol", f"{cluster} has no face crop left to enrol (purged by "
                               "retention?).", status_code=422)
        created = person is None
        if person is None:
            person = person_create(name=str(name), galleries=galleries, actor=actor, request_id=request_id)
        else:
            person = Person.objects.select_for_update().filter(pk=person.pk).first() or _gone(person)
        outcomes = face_enroll_bytes(person=person, blobs=blobs, force=force, largest=True, actor=actor,
                                     request_id=request_id)
        faces = [_face_report(s, o) for s, o in zip(tried, outcomes, strict=True)]
        enrolled = sum(1 for o in outcomes if o.face is not None)
        if not enrolled:
            refusal = next(o.error for o in outcomes if o.error is not None)
            raise ServiceError(refusal.error_code if len(outcomes) == 1 else "no_face_enrolled",
                               f"None of the {len(outcomes)} best faces of {cluster} could be enrolled "
                               f"(first refusal: {refusal.message}); send force=true to override the "
                               "quality gate.", status_code=422, details={"faces": faces})
        cluster.state, cluster.person, cluster.named_at = UnknownCluster.State.NAMED, person, timezone.now()
        cluster.save()
        events = Event.objects.filter(sighting__cluster=cluster).update(person=person, kind=Event.Kind.KNOWN,
                                                                      updated_at=timezone.now())
        _audit("unknown.name", [cluster.pk], {"person_id": person.pk, "person_created": created,
                                              "faces": faces, "events": events, "force": force}, actor, request_id)
    return NameResult(cluster=cluster, person=person, person_created=created, faces=faces, enrolled=enrolled,
                      events=events)


def _gone(person: Person) -> Person:
    raise ServiceError("unknown_person", f"No person with id {person.pk}.", status_code=400)


def _face_report(sighting: Sighting, outcome) -> dict:
    report: dict = {"sighting_id": sighting.pk, "face_id": outcome.face.pk if outcome.face else None,
                    "duplicate": outcome.duplicate}
    if outcome.error is not None:
        report["error"] = {"code": outcome.error.error_code, "message": outcome.error.message}
        if outcome.error.details is not None:
            report["error"]["details"] = outcome.error.details
    warnings = getattr(outcome, "warnings", None)
    if warnings:
        report["warnings"] = warnings
    return report


def cluster_merge(*, cluster: UnknownCluster, other: UnknownCluster, actor=None,
                  request_id: str = "") -> UnknownCluster:
    """``other``'s sightings join ``cluster`` (which keeps its number); ``other`` is deleted."""
    if cluster.pk == other.pk:
        raise ServiceError("merge_self", "A cluster cannot be merged with itself.", status_code=400)
    with transaction.atomic():
        # Locked in id order: two merges of the same pair in opposite directions cannot deadlock.
        first, second = sorted([cluster, other], key=lambda c: c.pk)
        locked = {c.pk: _locked(c) for c in (first, second)}
        into, gone = locked[cluster.pk], locked[other.pk]
        weights = [c.sighting_count for c in (into, gone)]
        vectors = [c.centroid_array() for c in (into, gone)]
        present = [(w, v) for w, v in zip(weights, vectors, strict=True) if v is not None]
        centroid = (sum(max(w, 1) * v for w, v in present) / sum(max(w, 1) for w, _ in present)
                    if present else None)
        moved = Sighting.objects.filter(cluster=gone).update(cluster=into)
        number = gone.number
        gone.delete()
        _refresh(into, centroid=centroid)
        _audit("unknown.merge", [into.pk, other.pk], {"merged": other.pk, "number": number, "sightings": moved},
               actor, request_id)
    return into


def cluster_split(*, cluster: UnknownCluster, sighting_ids: Sequence[int], actor=None,
                  request_id: str = "") -> UnknownCluster:
    """Those sightings of ``cluster`` become a new cluster (returned)."""
    wanted = sorted(set(sighting_ids))
    if not wanted:
        raise ServiceError("invalid", "sightings: name at least one sighting.",
                           details={"sightings": ["Name at least one sighting."]})
    with transaction.atomic():
        cluster = _locked(cluster)
        members = set(Sighting.objects.filter(cluster=cluster).values_list("id", flat=True))
        outside = [pk for pk in wanted if pk not in members]
        if outside:
            raise ServiceError("not_in_cluster", f"Sightings {outside} are not in {cluster}.", status_code=400,
                               details={"sightings": outside})
        if len(wanted) == len(members):
            raise ServiceError("split_all", f"Those are all the sightings of {cluster}: nothing would be left.",
                               status_code=400)
        new = UnknownCluster.objects.create(number=_next_number())
        Sighting.objects.filter(pk__in=wanted).update(cluster=new)
        _refresh(new)
        _refresh(cluster)
        _audit("unknown.split", [cluster.pk, new.pk], {"new": new.pk, "sightings": wanted}, actor, request_id)
    return new


def cluster_discard(*, cluster: UnknownCluster, actor=None, request_id: str = "") -> UnknownCluster:
    """Discard a cluster that is nobody to name (a poster, a screen, a false detection): its crops
    and embeddings are deleted, and it stays as a tombstone (state, centroid, counts) so that the
    same face seen again joins it, without crop or embedding, instead of forming a new cluster.
    Retention deletes the tombstone once it is not seen for UNKNOWN_CLUSTER_RETENTION_DAYS."""
    with transaction.atomic():
        cluster = _locked(cluster)
        sightings = Sighting.objects.filter(cluster=cluster)
        names = [n for n in sightings.values_list("crop", flat=True) if n]
        cleared = sightings.update(crop="", embedding=None)
        cluster.state = UnknownCluster.State.DISCARDED
        cluster.save()
        delete_after_commit(names)
        _audit("unknown.discard", [cluster.pk], {"sightings": cleared, "crops": len(names)}, actor, request_id)
    return cluster
