"""manage.py purge_event_crops: delete event crops and embeddings older than EVENT_RETENTION_DAYS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from events.tasks import purge_event_crops


class Command(BaseCommand):
    help = "Delete the crops and embeddings of events last seen more than EVENT_RETENTION_DAYS days ago."

    def handle(self, *args, **options):
        if settings.EVENT_RETENTION_DAYS <= 0:
            self.stdout.write("EVENT_RETENTION_DAYS is 0: crops are kept, nothing purged.")
            return
        # In this process, not through a broker: a cron job must not depend on a worker running.
        purged = purge_event_crops.apply().get()
        self.stdout.write(f"Purged the crops of {purged} event(s) older than {settings.EVENT_RETENTION_DAYS} days.")
