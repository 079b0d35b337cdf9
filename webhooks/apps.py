from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

        from core.exposition import register_scrape_reader
        from events.hooks import event_recorded
        from people.hooks import person_erasing
        from people.models import Person
        from streams.models import Camera
        from webhooks.erasure import erase_person_deliveries
        from webhooks.metrics import webhook_deliveries
        from webhooks.models import Subscription
        from webhooks.receivers import on_event_recorded
        from webhooks.selectors import routes_changed
        from webhooks.services import subscriptions_detach

        register_scrape_reader(webhook_deliveries)
        event_recorded.connect(on_event_recorded, dispatch_uid="webhooks.deliver")
        person_erasing.connect(erase_person_deliveries, sender=Person, dispatch_uid="webhooks.erase_person")
        pre_delete.connect(lambda instance, **kwargs: subscriptions_detach(person_id=instance.pk), sender=Person,
                           weak=False, dispatch_uid="webhooks.detach_person")
        pre_delete.connect(lambda instance, **kwargs: subscriptions_detach(camera_id=instance.pk), sender=Camera,
                           weak=False, dispatch_uid="webhooks.detach_camera")
        # Whatever path writes a subscription (services, admin, shell), this process's routes are
        # read again at once; other processes within selectors.ROUTES_CACHE_SECONDS.
        writes = ((post_save, Subscription), (post_delete, Subscription),
                  (m2m_changed, Subscription.people.through), (m2m_changed, Subscription.cameras.through))
        for number, (signal, sender) in enumerate(writes):
            signal.connect(lambda **kwargs: routes_changed(), sender=sender, weak=False,
                           dispatch_uid=f"webhooks.routes.{number}")
