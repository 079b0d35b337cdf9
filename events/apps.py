from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Recognition events"

    def ready(self) -> None:
        from core.prometheus import record_event
        from events import mqtt, signals  # noqa: F401  (signals connects its receivers)
        from events.hooks import event_recorded

        # Lazy: the publisher starts on the first event, in the process that records it.
        event_recorded.connect(mqtt.on_event_recorded, dispatch_uid="events.mqtt")
        event_recorded.connect(record_event, dispatch_uid="core.prometheus.record_event")
