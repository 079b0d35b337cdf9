"""Events as the live pipeline writes them, for tests: one set of plausible values, changed per test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def event_values(**changes) -> dict:
    """The keyword arguments of events.services.event_upsert: an unknown face at camera "door",
    without crop or embedding; a person_id makes it known unless ``kind`` is given."""
    values = {
        "uid": uuid.uuid4(), "source": "camera", "camera_id": None, "source_name": "door", "user_id": None,
        "gallery_id": None, "track_id": 1, "kind": "unknown", "person_id": None, "distance": 0.7,
        "confidence": 0.42, "threshold": 0.6, "first_seen": T0, "named_at": T0 + timedelta(milliseconds=350),
        "last_seen": T0 + timedelta(seconds=2), "closed_at": None, "frames_seen": 10, "frames_recognised": 8,
        "face_box": {"top": 10, "right": 120, "bottom": 130, "left": 0}, "face_size": 120, "sharpness": 35.5,
        "embedding": None, "crop_jpeg": None,
    }
    values.update(changes)
    if values["person_id"] is not None and "kind" not in changes:
        values["kind"] = "known"
    return values


def write_event(**changes):
    """event_upsert with ``event_values(**changes)``: its after-commit signal runs the receivers."""
    from events.services import event_upsert

    return event_upsert(**event_values(**changes))
