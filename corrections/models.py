"""Negative examples: faces an operator said are *not* a given person ("this is not X")."""

from __future__ import annotations

import uuid

import numpy as np
from django.conf import settings
from django.db import models
from django.utils import timezone

from events.models import Event
from face_engine.types import EMBEDDING_DIM
from people.models import Person
from unknowns.models import Sighting


def _crop_to(instance: NegativeFace, filename: str) -> str:
    # Not under the person's id: a folder named after them would outlive their erasure (empty).
    return f"corrections/{timezone.now():%Y/%m/%d}/{uuid.uuid4().hex}.jpg"


class NegativeFace(models.Model):
    """A face that is not ``person``: a query closer to it than to the person's own faces is not
    named after the person (face_engine.index). It owns a copy of its source's crop (the event's
    and the sighting's crops have their own retention). The source row may go later (deleted,
    purged): the negative stays, it is the person's data about a stranger, erased with the person."""

    class Source(models.TextChoices):
        EVENT = "event", "Event"
        SIGHTING = "sighting", "Sighting"

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="negative_faces")
    embedding = models.BinaryField()  # 128 little-endian float32, never pickled
    model = models.CharField(max_length=200, db_index=True, help_text="The embedding model's id.")
    crop = models.FileField(upload_to=_crop_to, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sighting = models.ForeignKey(Sighting, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["person", "created_at"])]

    def __str__(self) -> str:
        return f"not {self.person} (negative {self.pk})"

    def embedding_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.embedding), dtype="<f4").reshape(EMBEDDING_DIM)
