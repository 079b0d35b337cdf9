"""Writes to subscriptions: created, changed and deleted by staff (API and admin), each with its
audit record. The secret and the URL are never written to the audit trail (a URL may carry a
token); its details hold ids and field names. Deliveries: see webhooks.deliveries."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from core.audit.services import audit_record
from core.errors import ServiceError
from people.models import Person
from streams.models import Camera
from webhooks.models import KINDS, PHASES, Subscription, new_secret
from webhooks.selectors import routes_changed
from webhooks.ssrf import UnsafeURL, check_url

SECRET_MIN, SECRET_MAX = 16, 200


class FieldError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _choices(value, allowed: tuple[str, ...], what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise FieldError(f"A list of {what}: {', '.join(allowed)}.")
    chosen = []
    for item in value:
        if item not in allowed:
            raise FieldError(f"{item!r} is not one of {', '.join(allowed)}.")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise FieldError(f"Choose at least one of {', '.join(allowed)}.")
    return chosen


def check_field(field: str, value):
    """The cleaned value of one field, or FieldError; shared by the API's serializer, the admin's
    form and the services themselves."""
    if field == "name":
        name = str(value).strip()
        if not 1 <= len(name) <= 100:
            raise FieldError("A name of 1 to 100 characters.")
        return name
    if field == "url":
        try:
            check_url(value)
        except UnsafeURL as exc:
            raise FieldError(str(exc)) from None
        return value
    if field == "secret":
        secret = str(value)
        if not (SECRET_MIN <= len(secret) <= SECRET_MAX and secret.isascii() and secret.isprintable()
                and " " not in secret):
            raise FieldError(f"{SECRET_MIN} to {SECRET_MAX} printable ASCII characters without spaces "
                             "(leave it out to have one generated).")
        return secret
    if field == "kinds":
        return _choices(value, KINDS, "kinds of event")
    if field == "phases":
        return _choices(value, PHASES, "phases")
    return value


def _clean(fields: dict) -> dict:
    errors: dict[str, list[str]] = {}
    cleaned = {}
    for field, value in fields.items():
        try:
            cleaned[field] = check_field(field, value)
        except FieldError as exc:
            errors[field] = [exc.message]
    if errors:
        field, messages = next(iter(errors.items()))
        raise ServiceError("invalid", f"{field}: {messages[0]}", details=errors)
    return cleaned


def _changed_after_commit() -> None:
    transaction.on_commit(routes_changed)


@transaction.atomic
def subscription_create(
    *, name: str, url: str, kinds: list[str] | None = None, phases: list[str] | None = None,
    people: Iterable[Person] = (), cameras: Iterable[Camera] = (), secret: str | None = None,
    active: bool = True, actor=None, request_id: str = "",
) -> Subscription:
    fields = _clean({"name": name, "url": url, "kinds": list(KINDS) if kinds is None else kinds,
                     "phases": ["opened"] if phases is None else phases,
                     **({"secret": secret} if secret else {})})
    subscription = Subscription.objects.create(
        active=active, created_by=actor if actor is not None and actor.is_authenticated else None,
        secret=fields.pop("secret", None) or new_secret(), **fields)
    subscription.people.set(list(people))
    subscription.cameras.set(list(cameras))
    audit_record(actor=actor, action="webhook.create", target_type="webhook", target_ids=[subscription.pk],
                 details={"kinds": subscription.kinds, "phases": subscription.phases, "active": active},
                 request_id=request_id)
    _changed_after_commit()
    return subscription


@transaction.atomic
def subscription_update(*, subscription: Subscription, actor=None, request_id: str = "", **fields) -> Subscription:
    """Set the given fields (people and cameras replace the lists); nothing changed writes nothing."""
    relations = {name: fields.pop(name) for name in ("people", "cameras") if name in fields}
    cleaned = _clean(fields)
    changed = sorted(name for name, value in cleaned.items() if getattr(subscription, name) != value)
    for name in changed:
        setattr(subscription, name, cleaned[name])
    if changed:
        subscription.save(update_fields=[*changed, "updated_at"])
    for name, values in relations.items():
        new = {item.pk for item in values}
        if new != set(getattr(subscription, name).values_list("pk", flat=True)):
            getattr(subscription, name).set(list(values))
            changed.append(name)
    if changed:
        audit_record(actor=actor, action="webhook.update", target_type="webhook", target_ids=[subscription.pk],
                     details={"fields": sorted(changed)}, request_id=request_id)
        _changed_after_commit()
    return subscription


@transaction.atomic
def subscription_delete(*, subscription: Subscription, actor=None, request_id: str = "") -> None:
    pk = subscription.pk
    subscription.delete()  # its deliveries with it; one waiting for a retry then finds nothing
    audit_record(actor=actor, action="webhook.delete", target_type="webhook", target_ids=[pk],
                 request_id=request_id)
    _changed_after_commit()


@transaction.atomic
def subscriptions_detach(*, person_id: int | None = None, camera_id: int | None = None) -> list[int]:
    """Before a person (or a camera) is deleted: a subscription restricted to it alone would, once
    the row is gone, have no restriction left and match everyone's events. It is deactivated
    instead (staff choose again); returns the ids deactivated."""
    if person_id is not None:
        through, column, pk, what = Subscription.people.through, "person_id", person_id, "person"
    else:
        through, column, pk, what = Subscription.cameras.through, "camera_id", camera_id, "camera"
    ids = set(through.objects.filter(**{column: pk}).values_list("subscription_id", flat=True))
    alone = [sid for sid in ids if through.objects.filter(subscription_id=sid).count() == 1]
    deactivated = list(Subscription.objects.filter(pk__in=alone, active=True).values_list("pk", flat=True))
    if deactivated:
        Subscription.objects.filter(pk__in=deactivated).update(active=False)
        audit_record(actor=None, action="webhook.update", target_type="webhook", target_ids=deactivated,
                     details={"fields": ["active"], "reason": f"its only {what} was deleted"})
        _changed_after_commit()
    return deactivated


# The delivery services, importable from here as every app's services are.
from webhooks.deliveries import (  # noqa: E402
    deliveries_create,
    deliveries_purge,
    deliveries_redispatch_due,
    delivery_attempt,
    delivery_ping,
    delivery_redeliver,
)

__all__ = [
    "check_field", "subscription_create", "subscription_update", "subscription_delete", "subscriptions_detach",
    "deliveries_create",
    "deliveries_purge", "deliveries_redispatch_due", "delivery_attempt", "delivery_ping", "delivery_redeliver",
]
