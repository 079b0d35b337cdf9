"""Writes to deliveries: created for an event (or a test ping, or a redelivery), attempted, retried
with backoff until WEBHOOK_MAX_ATTEMPTS, re-dispatched when a process died with them queued, purged
after WEBHOOK_LOG_RETENTION_DAYS.

An attempt first claims its delivery with one conditional UPDATE (pending and due → due again only
after this attempt's timeout): two dispatches of the same delivery (a Celery redelivery, the
sweeper) never attempt it at once, and a delivered one is never attempted again. No transaction or
row lock is held during the POST."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit.services import audit_record
from core.prometheus import WEBHOOK_DELAY, WEBHOOK_DELIVERIES, WEBHOOK_SECONDS
from events.models import Event
from events.payloads import event_payload
from webhooks import backends, sender, signing
from webhooks.models import ATTEMPT_LOG_MAX, PING, Delivery, Subscription
from webhooks.ssrf import UnsafeURL, check_url

logger = logging.getLogger(__name__)
# A scheduler's timer may fire a little before the database's clock says the attempt is due.
EARLY_TOLERANCE = timedelta(seconds=1)
# An attempt's claim outlives its timeout by this much (the time to record its outcome).
LEASE_MARGIN_SECONDS = 30.0
# The sweeper re-dispatches pending deliveries due more than this long ago: nobody holds them.
REDISPATCH_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt ``attempts + 1``: BACKOFF × 2^(attempts−1), capped, with up to 10% jitter
    so receivers coming back from an outage are not hit by every retry at the same instant."""
    base = settings.WEBHOOK_BACKOFF_SECONDS * 2 ** min(max(attempts - 1, 0), 30)
    return min(settings.WEBHOOK_BACKOFF_MAX_SECONDS, base * random.uniform(1.0, 1.1))


def _dispatch_after_commit(deliveries: list[Delivery]) -> None:
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: [backends.dispatch(pk) for pk in ids])


@transaction.atomic
def deliveries_create(*, event: Event, phase: str, subscription_ids: list[int]) -> list[Delivery]:
    """One delivery per subscription, sent after commit."""
    ids = list(Subscription.objects.filter(pk__in=subscription_ids, active=True).values_list("pk", flat=True))
    if not ids:
        return []
    payload = event_payload(event, phase)
    now = timezone.now()
    deliveries = Delivery.objects.bulk_create([
        Delivery(subscription_id=pk, event=event, event_uid=event.uid, phase=phase, payload=payload,
                 named_at=event.named_at, next_attempt_at=now) for pk in ids])
    _dispatch_after_commit(deliveries)
    return deliveries


@transaction.atomic
def delivery_ping(*, subscription: Subscription, actor=None, request_id: str = "") -> Delivery:
    """A test delivery (X-Facerec-Event: ping), sent even while the subscription is inactive."""
    now = timezone.now()
    payload = {"type": "ping", "phase": PING, "subscription": {"id": subscription.pk, "name": subscription.name},
               "sent_at": now.isoformat()}
    delivery = Delivery.objects.create(subscription=subscription, phase=PING, payload=payload, next_attempt_at=now)
    audit_record(actor=actor, action="webhook.ping", target_type="webhook", target_ids=[subscription.pk],
                 details={"delivery": str(delivery.pk)}, request_id=request_id)
    _dispatch_after_commit([delivery])
    return delivery


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery, actor=None, request_id: str = "") -> Delivery:
    """The same payload again, as a new delivery (new id, fresh attempts); the original keeps its log."""
    copy = Delivery.objects.create(
        subscription_id=delivery.subscription_id, event_id=delivery.event_id, event_uid=delivery.event_uid,
        phase=delivery.phase, payload=delivery.payload, named_at=delivery.named_at, next_attempt_at=timezone.now())
    audit_record(actor=actor, action="webhook.redeliver", target_type="webhook", target_ids=[delivery.subscription_id],
                 details={"delivery": str(delivery.pk), "new_delivery": str(copy.pk)}, request_id=request_id)
    _dispatch_after_commit([copy])
    return copy


def _claim(delivery_id, now: datetime) -> datetime | None:
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    claimed = Delivery.objects.filter(pk=delivery_id, state=Delivery.State.PENDING,
                                      next_attempt_at__lte=now + EARLY_TOLERANCE).update(next_attempt_at=lease)
    return lease if claimed else None


def _headers(delivery: Delivery, secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": signing.USER_AGENT,
        signing.SIGNATURE_HEADER: signing.sign(secret, body, int(time.time())),
        signing.DELIVERY_HEADER: str(delivery.pk),
        signing.EVENT_HEADER: delivery.phase,
    }


def delivery_attempt(*, delivery_id) -> Delivery | None:
    """One attempt of a pending, due delivery; records it and schedules the next one on failure.
    Returns the delivery as recorded, or None when there was nothing to attempt (not found, not due,
    already delivered or failed, or being attempted elsewhere)."""
    started_at = timezone.now()
    lease = _claim(delivery_id, started_at)
    if lease is None:
        return None
    delivery = Delivery.objects.select_related("subscription").get(pk=delivery_id)
    subscription = delivery.subscription
    if not subscription.active and delivery.phase != PING:
        return _record(delivery, lease, started_at, sender.Response(None, "The subscription is inactive.", 0.0),
                       final=True)
    try:
        target = check_url(subscription.url)
    except UnsafeURL as exc:
        return _record(delivery, lease, started_at, sender.Response(None, str(exc), 0.0), refused=True)
    body = signing.body_bytes(delivery.payload)
    response = sender.post(target, body, _headers(delivery, subscription.secret, body),
                           timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    WEBHOOK_SECONDS.observe(response.latency_ms / 1000.0)
    return _record(delivery, lease, started_at, response)


def _record(delivery: Delivery, lease: datetime, started_at: datetime, response: sender.Response, *,
            refused: bool = False, final: bool = False) -> Delivery | None:
    now = timezone.now()
    attempts = delivery.attempts + 1
    entry = {"at": started_at.isoformat(), "status_code": response.status_code,
             "latency_ms": round(response.latency_ms, 1), "error": response.error}
    fields = {"attempts": attempts, "last_status_code": response.status_code, "last_error": response.error,
              "last_latency_ms": round(response.latency_ms, 1),
              "attempt_log": [*delivery.attempt_log, entry][-ATTEMPT_LOG_MAX:]}
    retry_in = None
    if response.ok:
        fields.update(state=Delivery.State.DELIVERED, delivered_at=now, next_attempt_at=None)
        outcome = "delivered"
    elif final or attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        fields.update(state=Delivery.State.FAILED, next_attempt_at=None)
        outcome = "abandoned"
    else:
        retry_in = backoff_seconds(attempts)
        fields.update(next_attempt_at=now + timedelta(seconds=retry_in))
        outcome = "failed"
    # Only while the claim is still ours (it cannot lapse before the attempt's timeout has passed).
    if not Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.PENDING, next_attempt_at=lease).update(
            **fields):
        logger.warning("webhook delivery %s: claim lost before its outcome was recorded", delivery.pk)
        return None
    WEBHOOK_DELIVERIES.labels(outcome="refused" if refused else outcome).inc()
    if outcome == "delivered" and delivery.named_at is not None:
        WEBHOOK_DELAY.observe(max(0.0, (now - delivery.named_at).total_seconds()))
    if retry_in is not None:
        backends.dispatch(delivery.pk, delay=retry_in)
    elif outcome != "delivered":
        logger.warning("webhook delivery %s to subscription %s failed after %d attempts: %s",
                       delivery.pk, delivery.subscription_id, attempts, response.error)
    for name, value in fields.items():
        setattr(delivery, name, value)
    return delivery


def deliveries_redispatch_due(*, now: datetime | None = None) -> int:
    """Dispatch again the pending deliveries due long ago: the process holding their retry (or the
    attempt itself) died. Safe to run anywhere, any time: the claim keeps each attempt single."""
    cutoff = (now or timezone.now()) - REDISPATCH_AFTER
    ids = list(Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lt=cutoff)
               .order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    for pk in ids:
        backends.dispatch(pk)
    if ids:
        logger.info("re-dispatched %d overdue webhook deliveries", len(ids))
    return len(ids)


def deliveries_purge(*, now: datetime | None = None) -> int:
    """Delete the delivery logs created more than WEBHOOK_LOG_RETENTION_DAYS days ago (0 keeps them)."""
    days = settings.WEBHOOK_LOG_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    purged = 0
    while True:
        ids = list(Delivery.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:SWEEP_BATCH])
        if not ids:
            return purged
        purged += Delivery.objects.filter(pk__in=ids).delete()[0]
