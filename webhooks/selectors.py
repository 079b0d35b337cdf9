"""Reads: the subscriptions and their deliveries, and the routes an event is matched against (cached
per process, so that an event costs no query at all while nothing subscribes)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.db.models import QuerySet

from webhooks.models import Delivery, Subscription

# A subscription created, changed or deleted in another process applies within this many seconds
# (in this process at once: the cache is dropped on every write).
ROUTES_CACHE_SECONDS = 2.0


def subscription_list() -> QuerySet[Subscription]:
    return Subscription.objects.prefetch_related("people", "cameras").select_related("created_by")


def delivery_list(*, subscription: Subscription, state: str | None = None) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(subscription=subscription)
    if state:
        deliveries = deliveries.filter(state=state)
    return deliveries.order_by("-created_at")


@dataclass(frozen=True)
class Route:
    """An active subscription as the event receiver needs it."""

    subscription_id: int
    kinds: frozenset[str]
    phases: frozenset[str]
    people: frozenset[int]  # empty: anyone
    cameras: frozenset[int]  # empty: any source

    def matches(self, *, kind: str, phase: str, person_id: int | None, camera_id: int | None) -> bool:
        return (kind in self.kinds and phase in self.phases
                and (not self.people or person_id in self.people)
                and (not self.cameras or camera_id in self.cameras))


_cache: tuple[float, tuple[Route, ...]] | None = None
_cache_lock = threading.Lock()


def _load_routes() -> tuple[Route, ...]:
    active = list(Subscription.objects.filter(active=True).values_list("id", "kinds", "phases"))
    if not active:
        return ()
    ids = [pk for pk, _, _ in active]
    people: dict[int, set[int]] = {}
    for pk, person_id in Subscription.people.through.objects.filter(subscription_id__in=ids).values_list(
            "subscription_id", "person_id"):
        people.setdefault(pk, set()).add(person_id)
    cameras: dict[int, set[int]] = {}
    for pk, camera_id in Subscription.cameras.through.objects.filter(subscription_id__in=ids).values_list(
            "subscription_id", "camera_id"):
        cameras.setdefault(pk, set()).add(camera_id)
    return tuple(Route(pk, frozenset(kinds or ()), frozenset(phases or ()), frozenset(people.get(pk, ())),
                       frozenset(cameras.get(pk, ()))) for pk, kinds, phases in active)


def active_routes() -> tuple[Route, ...]:
    global _cache
    cached = _cache
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    with _cache_lock:  # one loader at a time; the others wait for its answer
        cached = _cache
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        routes = _load_routes()
        _cache = (time.monotonic() + ROUTES_CACHE_SECONDS, routes)
        return routes


def routes_changed() -> None:
    global _cache
    _cache = None


def matching_subscription_ids(*, kind: str, phase: str, person_id: int | None, camera_id: int | None) -> list[int]:
    return [route.subscription_id for route in active_routes()
            if route.matches(kind=kind, phase=phase, person_id=person_id, camera_id=camera_id)]
