"""The receiver of events.hooks.event_recorded (connected in WebhooksConfig.ready). It runs in the
thread that writes events (a camera worker's writer, the ASGI process): it only matches the event
against the cached routes and, when some match, inserts their deliveries; the POSTs happen in the
delivery backend after commit. It never raises."""

from __future__ import annotations

import logging

from events.models import Event
from webhooks.deliveries import deliveries_create
from webhooks.selectors import matching_subscription_ids

logger = logging.getLogger(__name__)


def on_event_recorded(sender, event: Event, phase: str, **kwargs) -> None:
    try:
        ids = matching_subscription_ids(kind=event.kind, phase=phase, person_id=event.person_id,
                                        camera_id=event.camera_id)
        if ids:
            deliveries_create(event=event, phase=phase, subscription_ids=ids)
    except Exception:  # noqa: BLE001 - the live pipeline must go on; the event itself is recorded
        logger.exception("webhooks: could not queue the deliveries of event %s (%s)", event.uid, phase)
