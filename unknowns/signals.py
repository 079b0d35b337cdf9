"""Receivers, connected in UnknownsConfig.ready():

* events.hooks.event_recorded: an unknown event that closed with an embedding becomes a sighting
  and is clustered. Never raises (the live pipeline would only log it): a failure is logged and
  the event stays as it is (a later correction or a retry can still make its sighting).
* people.hooks.person_erasing: a person's erasure removes their sightings and named clusters.
* post_delete of Sighting: its crop file goes after commit (the admin, a queryset, a cascade).
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_delete

from events.models import Event
from unknowns.models import Sighting

logger = logging.getLogger(__name__)


def on_event_recorded(sender, event: Event, phase: str, **kwargs) -> None:
    if phase != "closed" or event.kind != Event.Kind.UNKNOWN or not event.embedding:
        return
    from unknowns.services import sighting_cluster, sighting_from_event

    try:
        sighting = sighting_from_event(event)
        if sighting is not None:
            sighting_cluster(sighting)
    except Exception:
        logger.exception("event %s: its unknown face was not clustered", event.pk)


def erase_person(sender, person, **kwargs) -> dict[str, int]:
    from unknowns.retention import unknowns_erase_person

    return unknowns_erase_person(person=person)


def delete_sighting_crop(sender, instance: Sighting, **kwargs) -> None:
    from unknowns.services import delete_after_commit

    if instance.crop:
        delete_after_commit([instance.crop.name])


def connect() -> None:
    from events.hooks import event_recorded
    from people.hooks import person_erasing
    from people.models import Person

    event_recorded.connect(on_event_recorded, dispatch_uid="unknowns.event_recorded")
    person_erasing.connect(erase_person, sender=Person, dispatch_uid="unknowns.erase_person")
    post_delete.connect(delete_sighting_crop, sender=Sighting, dispatch_uid="unknowns.delete_crop")
