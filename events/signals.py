"""Biometric data never outlives its owner or its row: a person's erasure, by any path (API, admin,
service, queryset: people.erasure sends people.hooks.person_erasing for each), erases their events'
crops and embeddings and unlinks the events; a deleted event's crop file goes after commit.
Connected in EventsConfig.ready()."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from events.models import Event
from events.services import event_crop_delete, person_events_erase
from people.hooks import person_erasing
from people.models import Person


@receiver(person_erasing, sender=Person, dispatch_uid="events.erase_person")
def erase_person_events(sender, person: Person, **kwargs) -> dict[str, int]:
    # Sent before the row goes: afterwards the events' person is NULL and they could not be found.
    return person_events_erase(person_id=person.pk)


@receiver(post_delete, sender=Event, dispatch_uid="events.delete_crop")
def delete_event_crop(sender, instance: Event, **kwargs) -> None:
    event_crop_delete(event=instance)
