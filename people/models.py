from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from django.db import models

from face_engine.types import EMBEDDING_DIM


class Gallery(models.Model):
    """A set of people searched together: a class, a site, a door."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "galleries"

    def __str__(self) -> str:
        return self.name


class Person(models.Model):
    name = models.CharField(max_length=200, db_index=True)
    external_id = models.CharField(
        max_length=100, unique=True, null=True, blank=True,
        help_text="Your own identifier, e.g. a student number.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    galleries = models.ManyToManyField(Gallery, related_name="people", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "people"

    def __str__(self) -> str:
        return self.name


def _upload_to(instance: Face, filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"faces/{instance.person_id}/{uuid.uuid4().hex}.{suffix[:5]}"


def _thumb_to(instance: Face, filename: str) -> str:
    return f"thumbs/{instance.person_id}/{uuid.uuid4().hex}.jpg"


class Face(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ENCODED = "encoded", "Encoded"
        NO_FACE = "no_face", "No face"
        MULTIPLE_FACES = "multiple_faces", "Several faces"
        FAILED = "failed", "Failed"
        # Asynchronous enrolment only: the quality gate or the duplicate check refused the face
        # (``error`` starts with the reason code); a synchronous refusal keeps nothing.
        REFUSED = "refused", "Refused"

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="faces")
    image = models.FileField(upload_to=_upload_to)
    thumbnail = models.FileField(upload_to=_thumb_to, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    box_top = models.IntegerField(null=True, blank=True)
    box_right = models.IntegerField(null=True, blank=True)
    box_bottom = models.IntegerField(null=True, blank=True)
    box_left = models.IntegerField(null=True, blank=True)
    image_width = models.IntegerField(null=True, blank=True)
    image_height = models.IntegerField(null=True, blank=True)
    detection_score = models.FloatField(null=True, blank=True)
    # 128 float32 values, little-endian: 512 bytes. Never pickled.
    embedding = models.BinaryField(null=True, blank=True)
    # The quality record (people/quality.py, face_engine/quality.py), measured at each encoding:
    # columns, so the admin can sort and filter by them.
    quality_face_size = models.FloatField(null=True, blank=True, help_text="Side of the inner face, in pixels.")
    quality_sharpness = models.FloatField(null=True, blank=True,
                                          help_text="Variance of the Laplacian of the aligned face.")
    quality_yaw = models.FloatField(null=True, blank=True, help_text="Degrees, estimated from the landmarks.")
    quality_pitch = models.FloatField(null=True, blank=True, help_text="Degrees, estimated from the landmarks.")
    quality_roll = models.FloatField(null=True, blank=True, help_text="Degrees: the eye line's tilt.")
    quality_cut_off = models.FloatField(null=True, blank=True, help_text="Share of the face outside the photo.")
    quality_reasons = models.JSONField(default=list, blank=True,
                                       help_text="The quality thresholds this face fails (empty: none).")
    quality_forced = models.BooleanField(
        default=False, help_text="Enrolled by force over the quality gate or the duplicate check.")
    model = models.CharField(max_length=200, blank=True)
    encoded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["person", "sha256"], name="unique_photo_per_person"),
        ]

    def __str__(self) -> str:
        return f"Face {self.pk} of {self.person_id} ({self.status})"

    @property
    def box(self) -> dict[str, int] | None:
        if self.box_top is None:
            return None
        return {"top": self.box_top, "right": self.box_right,
                "bottom": self.box_bottom, "left": self.box_left}

    def embedding_array(self) -> np.ndarray | None:
        if not self.embedding:
            return None
        return np.frombuffer(bytes(self.embedding), dtype="<f4").reshape(EMBEDDING_DIM)


def embedding_bytes(vector: np.ndarray) -> bytes:
    array = np.asarray(vector, dtype="<f4").reshape(EMBEDDING_DIM)
    return array.tobytes()


def embedding_matrix(blobs: Sequence[bytes | memoryview]) -> np.ndarray:
    """Stored embeddings (128 little-endian float32 each, as the database returns them) as one
    (n, 128) float32 array, read-only; (0, 128) for none."""
    if not blobs:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype="<f4").reshape(len(blobs), EMBEDDING_DIM)
