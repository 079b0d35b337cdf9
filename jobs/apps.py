from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Encoding jobs"

    def ready(self) -> None:
        from core.exposition import register_scrape_reader
        from jobs.metrics import jobs

        register_scrape_reader(jobs)
