"""How long unknown faces are kept, and their erasure with a person.

* UNKNOWN_CROP_RETENTION_DAYS: a sighting not in a named cluster, seen longer ago than that, loses
  its crop and embedding (the row stays: when and where, counted by its cluster). A named cluster's
  sightings are that person's history and go with the person (erasure).
* UNKNOWN_CLUSTER_RETENTION_DAYS: an open or discarded cluster not seen for that long is deleted
  with its sightings.

Run hourly by the camera workers (streams/worker.py), by Celery beat (unknowns.tasks) and by
``manage.py purge_unknowns``; each batch is one bounded transaction, files go after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from people.models import Person
from unknowns.models import Sighting, UnknownCluster
from unknowns.services import delete_after_commit

BATCH = 500


@dataclass(frozen=True)
class Purged:
    sightings: int  # crops and embeddings deleted (rows kept)
    clusters: int  # clusters deleted
    cluster_sightings: int  # sightings deleted with them


def unknowns_purge(*, now: datetime | None = None) -> Purged:
    now = now or timezone.now()
    # Clusters first: the sightings deleted with them are not counted again as crops purged.
    clusters, rows = (_clusters_purge(now - timedelta(days=settings.UNKNOWN_CLUSTER_RETENTION_DAYS))
                      if settings.UNKNOWN_CLUSTER_RETENTION_DAYS > 0 else (0, 0))
    crops = _crops_purge(now - timedelta(days=settings.UNKNOWN_CROP_RETENTION_DAYS)) \
        if settings.UNKNOWN_CROP_RETENTION_DAYS > 0 else 0
    return Purged(sightings=crops, clusters=clusters, cluster_sightings=rows)


def _crops_purge(cutoff: datetime) -> int:
    stored = Q(embedding__isnull=False) | ~Q(crop="")
    named = Q(cluster__state=UnknownCluster.State.NAMED)
    purged = 0
    while True:
        with transaction.atomic():
            # of=self: the named-cluster test joins clusters (outer), which PostgreSQL cannot lock.
            rows = list(Sighting.objects.select_for_update(of=("self",)).filter(stored, seen_at__lt=cutoff)
                        .exclude(named)
                        .order_by("id").values_list("id", "crop")[:BATCH])
            if not rows:
                return purged
            # Purged rows no longer match ``stored``: every batch makes progress.
            purged += Sighting.objects.filter(pk__in=[pk for pk, _ in rows]).update(crop="", embedding=None)
            delete_after_commit(name for _, name in rows)


def _clusters_purge(cutoff: datetime) -> tuple[int, int]:
    states = [UnknownCluster.State.OPEN, UnknownCluster.State.DISCARDED]
    clusters = rows = 0
    while True:
        with transaction.atomic():
            ids = list(UnknownCluster.objects.select_for_update()
                       .filter(Q(last_seen__lt=cutoff) | Q(last_seen__isnull=True, created_at__lt=cutoff),
                               state__in=states).order_by("id").values_list("id", flat=True)[:BATCH])
            if not ids:
                return clusters, rows
            # Their crops go after commit (post_delete of Sighting: unknowns.signals).
            sightings = Sighting.objects.filter(cluster_id__in=ids)
            rows += sightings.delete()[1].get(Sighting._meta.label, 0)
            clusters += UnknownCluster.objects.filter(pk__in=ids).delete()[1].get(UnknownCluster._meta.label, 0)


def unknowns_erase_person(*, person: Person) -> dict[str, int]:
    """A person's erasure (people.hooks.person_erasing): the sightings named after them, in a cluster
    named to them or made from an event of theirs, and those clusters, with their crops (after commit)."""
    with transaction.atomic():
        # Their crops go after commit (post_delete of Sighting: unknowns.signals).
        sightings = Sighting.objects.filter(Q(matched_person=person) | Q(cluster__person=person)
                                            | Q(event__person=person))
        removed = sightings.delete()[1].get(Sighting._meta.label, 0)
        clusters = UnknownCluster.objects.filter(person=person).delete()[1].get(UnknownCluster._meta.label, 0)
    return {"sightings": removed, "clusters": clusters}
