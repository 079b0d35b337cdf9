"""Reads of unknown identities for the API and the admin."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Max, QuerySet

from streams.models import Camera
from unknowns.models import Sighting, UnknownCluster


def cluster_list(*, state: str | None = None, camera: Camera | None = None,
                 since: datetime | None = None) -> QuerySet[UnknownCluster]:
    queryset = UnknownCluster.objects.select_related("person")
    if state:
        queryset = queryset.filter(state=state)
    if camera is not None:
        queryset = queryset.filter(pk__in=Sighting.objects.filter(camera=camera).values("cluster_id"))
    if since is not None:
        queryset = queryset.filter(last_seen__gte=since)
    return queryset.order_by("-last_seen", "-id")


def cluster_cameras(cluster: UnknownCluster) -> list[dict]:
    """Where the cluster's faces were seen: per camera (or source name), how often and last when."""
    rows = (Sighting.objects.filter(cluster=cluster).values("camera_id", "source_name")
            .annotate(sightings=Count("id"), last_seen=Max("seen_at")).order_by("-last_seen"))
    return list(rows)
