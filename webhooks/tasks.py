"""Celery tasks: take ids and call a service. A failed attempt is not a task failure: the service
records it and sends this task again with the backoff as countdown (webhooks.backends.dispatch)."""

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str | None:
    from webhooks.deliveries import delivery_attempt

    delivery = delivery_attempt(delivery_id=delivery_id)
    return delivery.state if delivery is not None else None


@shared_task(ignore_result=True)
def webhooks_maintenance() -> dict:
    """Run periodically (celery beat): re-dispatch deliveries a dead worker held, purge old logs."""
    from webhooks.deliveries import deliveries_purge, deliveries_redispatch_due

    return {"redispatched": deliveries_redispatch_due(), "purged": deliveries_purge()}
