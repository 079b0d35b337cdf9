"""Reads of cameras, and how fresh a camera's reported status is."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from core.ids import parse_id
from people.models import Gallery
from streams.models import Camera

# A worker reports at least once per lease renewal (a third of the lease); three leases without a
# report means it is gone, whatever state it last wrote.
STALE_LEASES = 3


def camera_list(*, enabled: bool | None = None, gallery: Gallery | None = None, search: str = "") -> QuerySet[Camera]:
    queryset = Camera.objects.order_by("name", "id")
    if enabled is not None:
        queryset = queryset.filter(enabled=enabled)
    if gallery is not None:
        queryset = queryset.filter(gallery=gallery)
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset


def camera_by_ref(value: object) -> Camera | None:
    """A camera by its id or its name (None when there is none); a name may be digits only."""
    text = str(value).strip()
    pk = parse_id(text)
    camera = Camera.objects.filter(pk=pk).first() if pk is not None else None
    return camera or Camera.objects.filter(name=text).first()


def camera_status_is_stale(camera: Camera, *, now: datetime | None = None) -> bool:
    """True when the camera claims to run (state other than stopped) but no worker has reported
    for STALE_LEASES leases: the state shown is the last word of a worker that is gone."""
    if camera.state == Camera.State.STOPPED:
        return False
    if camera.status_at is None:
        return True
    limit = timedelta(seconds=STALE_LEASES * settings.CAMERA_LEASE_SECONDS)
    return (now or timezone.now()) - camera.status_at > limit
