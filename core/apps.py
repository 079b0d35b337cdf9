from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Imported here: the events app is built on core, not the other way round.
        from core.prometheus import record_event
        from events.hooks import event_recorded

        event_recorded.connect(record_event, dispatch_uid="core.prometheus.record_event")
