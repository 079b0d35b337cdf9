"""Webhooks' gauge in /metrics, read from the database at scrape time (core.exposition)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily


def webhook_deliveries() -> list:
    from webhooks.models import Delivery

    return [GaugeMetricFamily("facerec_webhook_deliveries_pending", "Webhook deliveries waiting for their "
                              "first or next attempt.", value=Delivery.objects.filter(state=Delivery.State.PENDING)
                              .count())]
