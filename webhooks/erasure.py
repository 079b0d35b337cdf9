"""The webhooks' part of a person's erasure (people.hooks.person_erasing): the deliveries of their
events carry their id and name in the payload. They are deleted, sent or not: a pending one is
never sent (its attempt finds no row), and the delivery log keeps no copy of the person's data."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from people.models import Person
from webhooks.models import Delivery
from webhooks.selectors import routes_changed


def erase_person_deliveries(sender, person: Person, **kwargs) -> dict[str, int]:
    with transaction.atomic():
        named = Q(event__person_id=person.pk) | Q(payload__person_id=person.pk) | Q(payload__person=person.pk)
        deleted = Delivery.objects.filter(named).delete()[0]
        # The person's id leaves this process's subscription routes now, other processes' within
        # ROUTES_CACHE_SECONDS (their subscriptions lost the person with the row).
        transaction.on_commit(routes_changed)
    return {"webhook_deliveries": deleted}
