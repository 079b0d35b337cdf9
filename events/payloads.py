"""The one JSON shape of an event outside the API's list: the live feed, MQTT and webhooks send it."""

from __future__ import annotations

import copy

from events.models import Event
from events.serializers import EventSerializer

PHASES = ("opened", "updated", "closed")


def event_payload(event: Event, phase: str) -> dict:
    """The event as the API's detail shows it, plus what a consumer without the API needs: the phase
    (opened: the name was decided; updated: still in view; closed: the appearance ended), the
    camera's name and the gallery's slug. Plain JSON types only (json.dumps takes it as it is).

    Built once per event as written: the receivers of one write (MQTT, webhooks) share the same
    row object, so the second one costs neither the serializer nor its person and gallery queries.
    The copy returned is the caller's to change."""
    cache = event.__dict__.setdefault("_payloads", {})
    key = (phase, event.updated_at)
    if key not in cache:
        cache[key] = _build(event, phase)
    return copy.deepcopy(cache[key])


def _build(event: Event, phase: str) -> dict:
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
