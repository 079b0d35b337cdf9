"""Biometric data never outlives its owner or its row: a person's deletion by any path (API, admin,
service, queryset) erases their events' crops and embeddings, and a deleted event's crop file goes
after commit. Connected in EventsConfig.ready()."""

from __future__ import annotations

from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from events.models import Event
from events.services import event_crop_delete, events_erase_person
from people.models import Person


@receiver(pre_delete, sender=Person, dispatch_uid="events.erase_person")
def erase_person_events(sender, instance: Person, **kwargs) -> None:
    # pre_delete: afterwards the events' person is set to NULL and they could not be found.
    events_erase_person(person_id=instance.pk)


@receiver(post_delete, sender=Event, dispatch_uid="events.delete_crop")
def delete_event_crop(sender, instance: Event, **kwargs) -> None:
    event_crop_delete(event=instance)
