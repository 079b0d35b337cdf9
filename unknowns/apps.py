from django.apps import AppConfig


class UnknownsConfig(AppConfig):
    name = "unknowns"
    verbose_name = "Unknown identities"

    def ready(self) -> None:
        from unknowns import signals

        signals.connect()
