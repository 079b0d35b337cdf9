from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Cameras and live streams"

    def ready(self) -> None:
        from core.exposition import register_scrape_reader
        from streams.metrics import cameras

        register_scrape_reader(cameras)
