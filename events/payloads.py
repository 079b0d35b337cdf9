"""The one JSON shape of an event outside the API's list: the live feed, MQTT and webhooks send it."""

from __future__ import annotations

from events.models import Event
from events.serializers import EventSerializer

PHASES = ("opened", "updated", "closed")


def event_payload(event: Event, phase: str) -> dict:
    """The event as the API's detail shows it, plus what a consumer without the API needs: the phase
    (opened: the name was decided; updated: still in view; closed: the appearance ended), the
    camera's name and the gallery's slug. Plain JSON types only (json.dumps takes it as it is)."""
    data = dict(EventSerializer(event).data)
    data["uid"] = str(data["uid"])
    gallery = event.gallery if event.gallery_id else None
    return {
        "type": "event",
        "phase": phase,
        **data,
        "camera_name": event.source_name if event.source == Event.Source.CAMERA else None,
        "gallery_slug": gallery.slug if gallery is not None else None,
    }
