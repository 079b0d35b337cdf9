"""Camera leases: which camera worker runs which camera.

A worker claims enabled cameras whose lease is free or expired, renews its leases by heartbeat,
and reports status only while it holds the lease. On PostgreSQL the claim locks the rows it takes
with ``SELECT … FOR UPDATE SKIP LOCKED``, so two workers claiming at once never take the same
camera and never wait on each other; SQLite serialises writers anyway (one worker there).

A renewal keeps a lease that has expired as long as nobody else took it: a worker cut off from
the database (an outage) keeps its cameras and renews them when the database is back; only when
another worker has claimed a camera does the first one stop it (it learns that on its next
renewal). Claims take only expired leases, so a running worker is never robbed.
"""

from __future__ import annotations

import datetime as dt
import math

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from streams.models import Camera, CameraWorker


def camera_claim(*, worker_id: str, limit: int, lease_seconds: float) -> list[Camera]:
    """Take up to ``limit`` enabled cameras whose lease is free or expired."""
    if limit <= 0:
        return []
    now = timezone.now()
    with transaction.atomic():
        free = (Camera.objects.filter(enabled=True)
                .filter(Q(lease_owner="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
                .exclude(lease_owner=worker_id).order_by("id"))
        if connection.features.has_select_for_update_skip_locked:
            free = free.select_for_update(skip_locked=True)
        cameras = list(free[:limit])
        Camera.objects.filter(pk__in=[c.pk for c in cameras]).update(
            lease_owner=worker_id, lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            state=Camera.State.CONNECTING, last_error="", status_at=now)
    for camera in cameras:
        camera.lease_owner = worker_id
    return cameras


def camera_renew(*, worker_id: str, camera_ids: list[int], lease_seconds: float) -> dict[int, dt.datetime]:
    """Extend this worker's leases; returns {camera id: configuration time (updated_at)} of the
    cameras it still holds and that are still enabled (the others must stop)."""
    if not camera_ids:
        return {}
    now = timezone.now()
    mine = Camera.objects.filter(pk__in=camera_ids, lease_owner=worker_id)
    mine.update(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
    return dict(mine.filter(enabled=True).values_list("id", "updated_at"))


def camera_release(*, worker_id: str, camera_ids: list[int]) -> None:
    """Give cameras back (stopped, disabled or deleted, or the worker is shutting down)."""
    if camera_ids:
        Camera.objects.filter(pk__in=camera_ids, lease_owner=worker_id).update(
            lease_owner="", lease_expires_at=None, state=Camera.State.STOPPED, fps_in=0.0, fps_analysed=0.0,
            status_at=timezone.now())


def camera_status_write(*, worker_id: str, camera_id: int, **status) -> bool:
    """Write a camera's live status, only while this worker holds its lease."""
    return bool(Camera.objects.filter(pk=camera_id, lease_owner=worker_id)
                .update(status_at=timezone.now(), **status))


def worker_heartbeat(*, worker_id: str, capacity: int) -> None:
    """This worker is alive (and can run ``capacity`` cameras)."""
    now = timezone.now()
    if not CameraWorker.objects.filter(name=worker_id).update(heartbeat_at=now, capacity=capacity):
        CameraWorker.objects.get_or_create(name=worker_id, defaults={"heartbeat_at": now, "capacity": capacity})


def worker_leave(*, worker_id: str) -> None:
    CameraWorker.objects.filter(name=worker_id).delete()


def others_alive(*, worker_id: str, lease_seconds: float) -> bool:
    """Whether another worker with room for cameras has a recent heartbeat."""
    since = timezone.now() - dt.timedelta(seconds=lease_seconds)
    return CameraWorker.objects.filter(heartbeat_at__gte=since, capacity__gt=0).exclude(name=worker_id).exists()


def fair_share(*, worker_id: str, capacity: int, lease_seconds: float) -> int:
    """How many cameras this worker should hold: the enabled cameras shared among the live workers
    (heartbeat within a lease) as evenly as their capacities allow, rounded up so that together
    they hold them all. Workers silent for ten leases are forgotten."""
    now = timezone.now()
    CameraWorker.objects.filter(heartbeat_at__lt=now - dt.timedelta(seconds=10 * lease_seconds)).delete()
    others = dict(CameraWorker.objects.filter(heartbeat_at__gte=now - dt.timedelta(seconds=lease_seconds))
                  .exclude(name=worker_id).values_list("name", "capacity"))
    return share_out(Camera.objects.filter(enabled=True).count(), {**others, worker_id: capacity})[worker_id]


def share_out(cameras: int, capacities: dict[str, int]) -> dict[str, int]:
    """Each worker's share of ``cameras``: the smallest capacities first, each taking at most an
    even part of what is left (rounded up), so a small worker's remainder goes to the larger ones."""
    shares: dict[str, int] = {}
    left = cameras
    ordered = sorted(capacities.items(), key=lambda item: (item[1], item[0]))
    for position, (name, capacity) in enumerate(ordered):
        shares[name] = min(capacity, math.ceil(left / (len(ordered) - position))) if left > 0 else 0
        left -= shares[name]
    return shares
