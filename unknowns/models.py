"""Unknown faces kept for later (sightings) and the lasting identities they are clustered into."""

from __future__ import annotations

import uuid

import numpy as np
from django.db import models

from events.models import Event
from face_engine.types import EMBEDDING_DIM
from people.models import Person
from streams.models import Camera


def _crop_to(instance: Sighting, filename: str) -> str:
    return f"unknowns/{instance.seen_at:%Y/%m/%d}/{uuid.uuid4().hex}.jpg"


class UnknownCluster(models.Model):
    """A lasting unknown identity ("Unknown 12"): the sightings that look like one person."""

    class State(models.TextChoices):
        OPEN = "open", "Open"  # unknown, still collecting sightings
        NAMED = "named", "Named"  # given to a person: its faces were enrolled
        DISCARDED = "discarded", "Discarded"

    number = models.PositiveIntegerField(unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="unknown_clusters")
    sighting_count = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)
    # Mean of the members' embeddings, 128 little-endian float32 (never pickled).
    centroid = models.BinaryField(null=True, blank=True)
    named_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_seen", "-id"]

    def __str__(self) -> str:
        return f"Unknown {self.number}"

    def centroid_array(self) -> np.ndarray | None:
        if not self.centroid:
            return None
        return np.frombuffer(bytes(self.centroid), dtype="<f4").reshape(EMBEDDING_DIM)


class Sighting(models.Model):
    """One face seen and kept: an unknown event's best face, or a recognition's face when the
    request asked to keep it. It owns a copy of its crop (the event's crop has its own retention)."""

    class Source(models.TextChoices):
        EVENT = "event", "Event"
        RECOGNITION = "recognition", "Recognition request"

    source = models.CharField(max_length=12, choices=Source.choices)
    event = models.OneToOneField(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="sighting")
    camera = models.ForeignKey(Camera, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_name = models.CharField(max_length=200, blank=True)  # camera name, browser:<user>, api:<user>
    seen_at = models.DateTimeField(db_index=True)
    # 128 little-endian float32, never pickled; NULL once purged by retention or discarded (the row
    # stays: when and where the face was seen counts towards its cluster).
    embedding = models.BinaryField(null=True, blank=True)
    crop = models.FileField(upload_to=_crop_to, blank=True)
    box = models.JSONField(default=dict, blank=True)  # {top, right, bottom, left} in the source image
    face_size = models.PositiveIntegerField(default=0)
    sharpness = models.FloatField(default=0.0)
    # Who the service named it at the time (None: unknown); a correction can say otherwise.
    matched_person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="sightings")
    distance = models.FloatField(null=True, blank=True)
    cluster = models.ForeignKey(UnknownCluster, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="sightings")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-seen_at", "-id"]
        indexes = [models.Index(fields=["cluster", "seen_at"])]

    def __str__(self) -> str:
        return f"Sighting {self.pk} at {self.source_name or self.source}"

    def embedding_array(self) -> np.ndarray | None:
        if not self.embedding:
            return None
        return np.frombuffer(bytes(self.embedding), dtype="<f4").reshape(EMBEDDING_DIM)

    @property
    def quality(self) -> float:
        """How good a face it is to show or enrol: sharp and large (as the live pipeline's best face)."""
        return self.sharpness * min(self.face_size, 200) / 200.0
