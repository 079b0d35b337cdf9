"""manage.py purge_unknowns: apply UNKNOWN_CROP_RETENTION_DAYS and UNKNOWN_CLUSTER_RETENTION_DAYS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from unknowns.retention import unknowns_purge


class Command(BaseCommand):
    help = ("Delete the crops and embeddings of unknown sightings older than UNKNOWN_CROP_RETENTION_DAYS, and "
            "the open or discarded clusters not seen for UNKNOWN_CLUSTER_RETENTION_DAYS.")

    def handle(self, *args, **options):
        # In this process, not through a broker: a cron job must not depend on a worker running.
        purged = unknowns_purge()
        self.stdout.write(
            f"Purged the crops of {purged.sightings} sighting(s) (UNKNOWN_CROP_RETENTION_DAYS="
            f"{settings.UNKNOWN_CROP_RETENTION_DAYS}) and {purged.clusters} cluster(s) with "
            f"{purged.cluster_sightings} sighting(s) (UNKNOWN_CLUSTER_RETENTION_DAYS="
            f"{settings.UNKNOWN_CLUSTER_RETENTION_DAYS}; 0 keeps them).")
