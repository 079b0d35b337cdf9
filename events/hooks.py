"""What the consumers of events (live feed, MQTT, webhooks, attendance, metrics) connect to.

``event_recorded`` is sent after the transaction that wrote an event has committed, with
``event`` (the Event row as written) and ``phase``: "opened" (the row was created: a name was
decided), "updated" (still in view: last seen, best crop) or "closed" (the appearance ended).
A receiver must not raise: the live pipeline logs and ignores receivers' errors."""

from django.dispatch import Signal

event_recorded = Signal()
