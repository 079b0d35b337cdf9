"""Recognition events: one per appearance of a face in a live stream (a camera or a browser)."""

from __future__ import annotations

import uuid

import numpy as np
from django.conf import settings
from django.db import models

from face_engine.types import EMBEDDING_DIM
from people.models import Gallery, Person
from streams.models import Camera


def _crop_to(instance: Event, filename: str) -> str:
    return f"events/{instance.first_seen:%Y/%m/%d}/{instance.uid.hex}.jpg"


class Event(models.Model):
    """An appearance: written when its name is decided, updated while the face stays in view,
    closed when the track ends. ``uid`` is chosen by the stream's process, so a write retried
    after a database outage updates the same row instead of adding one."""

    class Kind(models.TextChoices):
        KNOWN = "known", "Known person"
        UNKNOWN = "unknown", "Unknown"

    class Source(models.TextChoices):
        CAMERA = "camera", "Camera"
        BROWSER = "browser", "Browser stream"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    camera = models.ForeignKey(Camera, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    # The camera's name, or "browser:<username>", kept when the camera is deleted.
    source_name = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", help_text="The browser stream's user.")
    gallery = models.ForeignKey(Gallery, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    track_id = models.IntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, db_index=True)
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    distance = models.FloatField(null=True, blank=True, help_text="Best distance to the person (unknown: nearest).")
    confidence = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    first_seen = models.DateTimeField(db_index=True)
    named_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)  # null while in view
    frames_seen = models.PositiveIntegerField(default=0)
    frames_recognised = models.PositiveIntegerField(default=0)
    # The best face of the appearance (sharpest and largest): its JPEG crop and its embedding.
    crop = models.FileField(upload_to=_crop_to, blank=True)
    face_box = models.JSONField(default=dict, blank=True)  # {top, right, bottom, left} in the frame
    face_size = models.PositiveIntegerField(default=0)
    sharpness = models.FloatField(default=0.0)
    embedding = models.BinaryField(null=True, blank=True)  # 128 little-endian float32, never pickled
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)  # the live feed reads what changed

    class Meta:
        ordering = ["-first_seen", "-id"]
        indexes = [
            models.Index(fields=["camera", "first_seen"]),
            models.Index(fields=["person", "first_seen"]),
            models.Index(fields=["gallery", "first_seen"]),
        ]

    def __str__(self) -> str:
        who = self.person.name if self.person_id else self.kind
        return f"{who} at {self.source_name} {self.first_seen:%Y-%m-%d %H:%M:%S}"

    @property
    def time_to_name_ms(self) -> float:
        return (self.named_at - self.first_seen).total_seconds() * 1000.0

    def embedding_array(self) -> np.ndarray | None:
        if not self.embedding:
            return None
        return np.frombuffer(bytes(self.embedding), dtype="<f4").reshape(EMBEDDING_DIM)
