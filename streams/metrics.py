"""Cameras' gauge in /metrics, read from the database at scrape time (core.exposition)."""

from __future__ import annotations

from django.db.models import Count

from core.exposition import counted_by


def cameras() -> list:
    from streams.models import Camera

    rows = Camera.objects.values_list("state").annotate(n=Count("id")).order_by()
    return [counted_by("facerec_cameras", "Cameras by live state (stopped: disabled or not claimed by a "
                       "camera worker).", "state", rows, list(Camera.State.values))]
