"""Jobs' gauge in /metrics, read from the database at scrape time (core.exposition)."""

from __future__ import annotations

from django.db.models import Count

from core.exposition import counted_by


def jobs() -> list:
    from jobs.models import Job

    states = [Job.State.QUEUED, Job.State.RUNNING]
    rows = Job.objects.filter(state__in=states).values_list("state").annotate(n=Count("id")).order_by()
    return [counted_by("facerec_jobs", "Encoding jobs waiting or running.", "state", rows, [str(s) for s in states])]
