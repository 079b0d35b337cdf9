"""manage.py compact_index_log: apply INDEX_LOG_RETENTION_HOURS and INDEX_LOG_REMOVALS_RETENTION_DAYS."""

from django.core.management.base import BaseCommand

from core.index.log import index_log_compact


class Command(BaseCommand):
    help = "Drop the index change log's entries past their retention (what no process should still need)."

    def handle(self, *args, **options):
        dropped = index_log_compact()["index_changes"]
        self.stdout.write(f"{dropped} index log entries dropped")
