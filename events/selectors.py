"""Reads of recognition events."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from events.models import Event
from people.models import Gallery
from streams.models import Camera


def event_list(
    *, camera: Camera | None = None, person_id: int | None = None, gallery: Gallery | None = None,
    unknown: bool | None = None, source: str | None = None, since: datetime | None = None,
    until: datetime | None = None, open: bool | None = None,
) -> QuerySet[Event]:
    """Newest first; ``since`` ≤ first_seen < ``until``; ``open``: still in view (not closed)."""
    queryset = Event.objects.select_related("camera", "person", "gallery").order_by("-first_seen", "-id")
    if camera is not None:
        queryset = queryset.filter(camera=camera)
    if person_id is not None:
        queryset = queryset.filter(person_id=person_id)
    if gallery is not None:
        queryset = queryset.filter(gallery=gallery)
    if unknown is not None:
        queryset = queryset.filter(kind=Event.Kind.UNKNOWN if unknown else Event.Kind.KNOWN)
    if source:
        queryset = queryset.filter(source=source)
    if since is not None:
        queryset = queryset.filter(first_seen__gte=since)
    if until is not None:
        queryset = queryset.filter(first_seen__lt=until)
    if open is not None:
        queryset = queryset.filter(closed_at__isnull=open)
    return queryset
