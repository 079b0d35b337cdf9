"""Webhook deliveries against real HTTP receivers on 127.0.0.1: signed bodies, matching, retries with
backoff, hanging and unreachable receivers beside a healthy one, the claim that keeps an attempt
single, the sweeper and the purge, the SSRF refusal at delivery and the pinned connection, the
Celery path. Real database (threads read what the test committed)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from conftest import celery_broker
from people.models import Person
from streams.models import Camera
from tests import webhook_support as support
from tests.webhook_support import close, closed_port, counter, event, subscribe
from webhooks import backends, signing
from webhooks.deliveries import (
    backoff_seconds,
    deliveries_purge,
    deliveries_redispatch_due,
    delivery_attempt,
)
from webhooks.models import Delivery
from webhooks.signing import verify_signature

fast_webhooks, receivers = support.fast_webhooks, support.receivers  # the fixtures, used here
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_webhooks")]


# ---- the signature ---------------------------------------------------------------------------

def test_signature_verifies_and_fails_when_anything_differs():
    body = b'{"type":"event","phase":"opened"}'
    header = signing.sign("s3cret-key-0123456789", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature("s3cret-key-0123456789", header, body, now=1_700_000_010)
    assert not verify_signature("s3cret-key-0123456789", header, body + b" ", now=1_700_000_010)  # body
    assert not verify_signature("another-secret-0123456", header, body, now=1_700_000_010)  # secret
    forged_time = header.replace("t=1700000000", "t=1700000005")  # the time is signed too
    assert not verify_signature("s3cret-key-0123456789", forged_time, body, now=1_700_000_010)
    # A replay: the same request, later than the tolerance (or from the future).
    assert verify_signature("s3cret-key-0123456789", header, body, tolerance=300, now=1_700_000_300)
    assert not verify_signature("s3cret-key-0123456789", header, body, tolerance=300, now=1_700_000_301)
    assert not verify_signature("s3cret-key-0123456789", header, body, now=1_699_999_000)
    for bad in ("", "v1=abc", "t=x,v1=abc", "t=1700000000", "garbage"):
        assert not verify_signature("s3cret-key-0123456789", bad, body, now=1_700_000_010)


def test_an_event_is_posted_signed_with_its_payload(receivers):
    receiver = receivers()
    subscription = subscribe(receiver.url)
    recorded = event()
    backends.wait_idle(10)
    [request] = receiver.wait_for(1)
    delivery = Delivery.objects.get()
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == signing.USER_AGENT
    assert request.headers["X-Facerec-Delivery"] == str(delivery.pk)
    assert request.headers["X-Facerec-Event"] == "opened"
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert verify_signature(subscription.secret, request.headers["X-Facerec-Signature"], request.body)
    assert not verify_signature("not-the-secret-at-all", request.headers["X-Facerec-Signature"], request.body)
    payload = request.json()
    assert (payload["type"], payload["phase"], payload["uid"], payload["kind"]) == (
        "event", "opened", str(recorded.uid), "unknown")
    assert request.body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()  # compact
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.event_id == recorded.pk and delivery.event_uid == recorded.uid
    assert delivery.named_at == recorded.named_at and delivery.delay_ms > 0
    assert delivery.next_attempt_at is None and delivery.attempt_log[0]["status_code"] == 200
    # Updated and closed writes of the same event are not sent: the subscription wants "opened" only.
    event(uid=recorded.uid, last_seen=recorded.last_seen + timedelta(seconds=1))
    close(recorded)
    backends.wait_idle(10)
    assert Delivery.objects.count() == 1 and len(receiver.requests) == 1


def test_matching_by_kind_person_camera_and_phase(receivers):
    receiver = receivers()
    door = Camera.objects.create(name="door", source_url="file://door.mp4")
    hall = Camera.objects.create(name="hall", source_url="file://hall.mp4")
    ada, bob = Person.objects.create(name="Ada"), Person.objects.create(name="Bob")
    unknown_only = subscribe(receiver.url + "/unknown", kinds=["unknown"])
    ada_only = subscribe(receiver.url + "/ada", people=[ada])
    door_closed = subscribe(receiver.url + "/door", cameras=[door], phases=["closed"])
    known_all = subscribe(receiver.url + "/known", kinds=["known"], phases=["opened", "closed"])
    subscribe(receiver.url + "/off", active=False)

    def sent_to(recorded) -> set[int]:
        return set(Delivery.objects.filter(event_uid=recorded.uid).values_list("subscription_id", flat=True))

    stranger = event(camera_id=hall.pk, source_name="hall")
    assert sent_to(stranger) == {unknown_only.pk}
    ada_at_hall = event(person_id=ada.pk, camera_id=hall.pk, source_name="hall")
    assert sent_to(ada_at_hall) == {ada_only.pk, known_all.pk}
    bob_at_door = event(person_id=bob.pk, camera_id=door.pk)
    assert sent_to(bob_at_door) == {known_all.pk}
    close(bob_at_door)
    closed = set(Delivery.objects.filter(event_uid=bob_at_door.uid, phase="closed")
                 .values_list("subscription_id", flat=True))
    assert closed == {door_closed.pk, known_all.pk}
    backends.wait_idle(10)
    paths = sorted(request.path for request in receiver.wait_for(6))
    assert paths == ["/hook/ada", "/hook/door", "/hook/known", "/hook/known", "/hook/known", "/hook/unknown"]
    assert set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}


def test_a_subscription_whose_only_person_is_deleted_stops_instead_of_matching_everyone(receivers):
    from people.services import person_delete

    receiver = receivers()
    ada, bob = Person.objects.create(name="Ada"), Person.objects.create(name="Bob")
    ada_only = subscribe(receiver.url, people=[ada])
    ada_or_bob = subscribe(receiver.url, people=[ada, bob])
    person_delete(person=ada)
    ada_only.refresh_from_db()
    ada_or_bob.refresh_from_db()
    assert (ada_only.active, list(ada_only.people.all())) == (False, [])
    assert (ada_or_bob.active, list(ada_or_bob.people.all())) == (True, [bob])
    event()  # an unknown face: ada_only, now without people, would have matched it
    bob_seen = event(person_id=bob.pk)
    assert list(Delivery.objects.values_list("subscription_id", "event_uid")) == [(ada_or_bob.pk, bob_seen.uid)]


def test_no_query_per_event_without_subscriptions_and_a_new_one_applies_at_once(
        receivers, django_assert_num_queries):
    from webhooks.receivers import on_event_recorded

    recorded = event()  # loads the (empty) routes once
    with django_assert_num_queries(0):
        on_event_recorded(sender=None, event=recorded, phase="opened")
    receiver = receivers()
    subscribe(receiver.url)  # this process drops its cached routes on the write
    event()
    backends.wait_idle(10)
    assert len(receiver.wait_for(1)) == 1


# ---- retries ---------------------------------------------------------------------------------

def test_a_500_then_200_is_retried_and_every_attempt_logged(receivers):
    receiver = receivers([500, 500, 200])
    subscription = subscribe(receiver.url)
    failed_before = counter("failed")
    event()
    backends.wait_idle(10)
    requests = receiver.wait_for(3)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, "")
    assert [entry["status_code"] for entry in delivery.attempt_log] == [500, 500, 200]
    assert delivery.attempt_log[0]["error"].startswith("HTTP 500")
    # The same delivery (same id, same body) each time, signed afresh.
    assert {r.headers["X-Facerec-Delivery"] for r in requests} == {str(delivery.pk)}
    assert len({r.body for r in requests}) == 1
    assert all(verify_signature(subscription.secret, r.headers["X-Facerec-Signature"], r.body) for r in requests)
    assert counter("failed") - failed_before == 2


def test_after_max_attempts_the_delivery_fails(receivers):
    receiver = receivers([503])
    subscribe(receiver.url)
    abandoned_before = counter("abandoned")
    event()
    backends.wait_idle(10)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert len(receiver.requests) == 3 and delivery.last_status_code == 503
    assert counter("abandoned") - abandoned_before == 1
    # Failed is final: a late dispatch attempts nothing.
    assert delivery_attempt(delivery_id=delivery.pk) is None and len(receiver.requests) == 3


def test_a_redirect_is_a_failure_and_not_followed(receivers):
    receiver = receivers([302])
    subscribe(receiver.url)
    event()
    backends.wait_idle(10)
    delivery = Delivery.objects.get()
    assert delivery.state == "failed" and "redirects are not followed" in delivery.last_error
    assert len(receiver.requests) == 3  # only the subscription's URL, once per attempt


def test_hanging_and_unreachable_receivers_do_not_delay_a_healthy_one(receivers, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    hanging = receivers([("hang", 3.0)])
    healthy = receivers([200])
    # Created first, so theirs are handed out first.
    subscribe(hanging.url, name="hanging")
    subscribe(f"http://127.0.0.1:{closed_port()}/hook", name="unreachable")
    subscribe(healthy.url, name="healthy")
    event()
    backends.wait_idle(20)
    by_name = {d.subscription.name: d for d in Delivery.objects.select_related("subscription")}
    assert by_name["healthy"].state == "delivered" and by_name["healthy"].attempts == 1
    for name, error in (("hanging", "timed out after 0.5 s"), ("unreachable", "connection refused")):
        delivery = by_name[name]
        assert (delivery.state, delivery.attempts) == ("failed", 2), name
        assert [entry["error"] for entry in delivery.attempt_log] == [error, error]
    assert len(hanging.requests) == 2
    # The healthy delivery was recorded before the hanging one's first attempt had timed out.
    first = by_name["hanging"].attempt_log[0]
    first_ended = datetime.fromisoformat(first["at"]) + timedelta(milliseconds=first["latency_ms"])
    assert by_name["healthy"].delivered_at < first_ended


def test_backoff_doubles_with_jitter_up_to_the_cap(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 2.0
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 600.0
    assert 2.0 <= backoff_seconds(1) <= 2.2
    assert 8.0 <= backoff_seconds(3) <= 8.8
    assert 256.0 <= backoff_seconds(8) <= 281.6
    assert backoff_seconds(10) == backoff_seconds(50) == 600.0


# ---- one attempt at a time, the sweeper, the purge -------------------------------------------

def _pending(subscription, **fields) -> Delivery:
    return Delivery.objects.create(subscription=subscription, phase="ping", payload={"type": "ping"},
                                   next_attempt_at=fields.pop("next_attempt_at", timezone.now()), **fields)


def test_a_delivery_is_never_attempted_twice_at_once(receivers):
    receiver = receivers([("hang", 0.5)])  # answers 200 after half a second
    delivery = _pending(subscribe(receiver.url))
    results = []
    threads = [threading.Thread(target=lambda: results.append(delivery_attempt(delivery_id=delivery.pk)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(receiver.requests) == 1
    assert sorted(r is None for r in results) == [False, True]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 1)
    assert delivery_attempt(delivery_id=delivery.pk) is None and len(receiver.requests) == 1  # never again


def test_the_sweeper_redispatches_overdue_deliveries(receivers):
    receiver = receivers()
    subscription = subscribe(receiver.url)
    now = timezone.now()
    overdue = _pending(subscription, next_attempt_at=now - timedelta(minutes=5))  # its process died
    _pending(subscription, next_attempt_at=now + timedelta(minutes=5))  # a retry still waiting
    assert deliveries_redispatch_due() == 1
    backends.wait_idle(10)
    assert [r.headers["X-Facerec-Delivery"] for r in receiver.wait_for(1)] == [str(overdue.pk)]
    overdue.refresh_from_db()
    assert overdue.state == "delivered"
    assert deliveries_redispatch_due() == 0


def test_old_delivery_logs_are_purged(receivers, settings):
    subscription = subscribe(receivers().url, active=False)
    old, recent = _pending(subscription, state="failed"), _pending(subscription, state="delivered")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    settings.WEBHOOK_LOG_RETENTION_DAYS = 0
    assert deliveries_purge() == 0  # 0 keeps them
    settings.WEBHOOK_LOG_RETENTION_DAYS = 30
    assert deliveries_purge() == 1
    assert list(Delivery.objects.values_list("pk", flat=True)) == [recent.pk]


# ---- server-side request forgery at delivery -------------------------------------------------

def test_a_private_address_is_refused_at_delivery(receivers, settings):
    receiver = receivers()
    subscribe(receiver.url)  # accepted while private addresses were allowed
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused_before = counter("refused")
    event()
    backends.wait_idle(10)
    delivery = Delivery.objects.get()
    assert delivery.state == "failed" and delivery.attempts == 3
    assert "Refused: 127.0.0.1 resolves to 127.0.0.1" in delivery.last_error
    assert receiver.requests == []
    assert counter("refused") - refused_before == 3


def test_the_connection_goes_to_the_address_checked(receivers, monkeypatch):
    """A name that resolves to an accepted address at the check and to anything else afterwards
    (DNS rebinding) is reached at the checked address: the sender never resolves it again."""
    from webhooks import ssrf

    receiver = receivers()
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])  # the subscription's check, then the attempt's
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: next(answers) if host == "hooks.example.test" else [])
    subscription = subscribe(f"http://hooks.example.test:{receiver.port}/in?x=1")
    event()
    backends.wait_idle(10)
    [request] = receiver.wait_for(1)
    assert request.path == "/in?x=1"
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert verify_signature(subscription.secret, request.headers["X-Facerec-Signature"], request.body)
    assert Delivery.objects.get().state == "delivered"


# ---- Celery ----------------------------------------------------------------------------------

def test_with_a_broker_attempts_are_celery_tasks_and_retries_have_a_countdown(receivers, settings):
    """Celery's own client on its in-memory transport: the task and its countdown as a worker gets them."""
    from kombu import Connection

    from webhooks.tasks import deliver_webhook, webhooks_maintenance

    receiver = receivers([500, 200])
    subscription = subscribe(receiver.url)
    with celery_broker(settings, "memory://"):
        with Connection("memory://") as connection:
            queue = connection.SimpleQueue("celery")
            event()
            message = queue.get(timeout=5)
            assert message.headers["task"] == "webhooks.tasks.deliver_webhook"
            [delivery_id], _, _ = message.decode()
            message.ack()
            assert delivery_id == str(Delivery.objects.get().pk)
            # A worker runs it: the 500 is recorded, and the retry is sent with its backoff.
            assert deliver_webhook.apply(args=[delivery_id]).result == "pending"
            retry = queue.get(timeout=5)
            assert retry.headers["task"] == "webhooks.tasks.deliver_webhook" and retry.headers["eta"]
            eta = datetime.fromisoformat(retry.headers["eta"])
            assert eta > timezone.now() - timedelta(seconds=1)
            retry.ack()
            time.sleep(0.3)  # the backoff (at most WEBHOOK_BACKOFF_MAX_SECONDS) has passed
            assert deliver_webhook.apply(args=[delivery_id]).result == "delivered"
            assert len(receiver.requests) == 2
            assert webhooks_maintenance.apply().result == {"redispatched": 0, "purged": 0}
            queue.close()
    assert subscription.deliveries.get().attempts == 2
