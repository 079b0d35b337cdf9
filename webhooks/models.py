"""Webhook subscriptions (written by staff through the API and the admin) and their deliveries: one
row per event sent to one subscription, with its state, its retries and a log of its attempts."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models

from events.models import Event
from people.models import Person
from streams.models import Camera

KINDS = tuple(Event.Kind.values)  # "known" (a person was named), "unknown"
# "updated" is not offered: an event is updated every few seconds while the face stays in view.
PHASES = ("opened", "closed")
PING = "ping"  # the phase of a test delivery (no event)
ATTEMPT_LOG_MAX = 20  # the attempts kept per delivery (the latest ones)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def default_kinds() -> list[str]:
    return list(KINDS)


def default_phases() -> list[str]:
    return ["opened"]


class Subscription(models.Model):
    """Where to POST which events. An event matches when its kind is in ``kinds``, its phase in
    ``phases`` and, when people (or cameras) are chosen, its person (camera) is one of them."""

    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000, help_text="http(s):// URL the events are POSTed to.")
    # Kept as is: it is needed to sign every delivery (a hash could not sign).
    secret = models.CharField(max_length=200, default=new_secret,
                              help_text="HMAC-SHA256 key of the X-Facerec-Signature header.")
    active = models.BooleanField(default=True)
    kinds = models.JSONField(default=default_kinds, help_text='"known" and/or "unknown".')
    phases = models.JSONField(default=default_phases, help_text='"opened" and/or "closed".')
    people = models.ManyToManyField(Person, blank=True, related_name="+",
                                    help_text="Only these people's events (none chosen: anyone).")
    cameras = models.ManyToManyField(Camera, blank=True, related_name="+",
                                     help_text="Only these cameras' events (none chosen: any source).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """One payload for one subscription. Its id is sent as X-Facerec-Delivery: a receiver that got
    it already (an attempt whose answer was lost) can recognise it."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # waiting for its first or next attempt
        DELIVERED = "delivered", "Delivered"  # the receiver answered 2xx
        FAILED = "failed", "Failed"  # given up after WEBHOOK_MAX_ATTEMPTS

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event_uid = models.UUIDField(null=True, blank=True)  # kept when the event is deleted
    phase = models.CharField(max_length=10)  # opened, closed, ping
    payload = models.JSONField()  # the body sent (events.payloads.event_payload)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due. While an attempt runs it is pushed past that attempt's end
    # (a lease), so no other process starts the same delivery; null once delivered or failed.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_latency_ms = models.FloatField(null=True, blank=True)
    # [{"at", "status_code", "latency_ms", "error"}, ...], the latest ATTEMPT_LOG_MAX attempts.
    attempt_log = models.JSONField(default=list, blank=True)
    named_at = models.DateTimeField(null=True, blank=True)  # the event's decision (delay to delivery)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["subscription", "created_at"], name="webhook_delivery_sub"),
        ]

    def __str__(self) -> str:
        return f"{self.phase} {self.event_uid or ''} → {self.subscription_id} ({self.state})"

    @property
    def delay_ms(self) -> float | None:
        """From the event's decision to its delivery."""
        if self.delivered_at is None or self.named_at is None:
            return None
        return (self.delivered_at - self.named_at).total_seconds() * 1000.0
