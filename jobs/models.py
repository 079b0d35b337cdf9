import uuid

from django.conf import settings
from django.db import models


class Job(models.Model):
    """A background encoding job. Its state lives here, whichever backend runs it."""

    class Kind(models.TextChoices):
        ENCODE = "encode", "Encode faces"
        REGENERATE_ALL = "regenerate_all", "Re-encode every face"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED, db_index=True)
    face_ids = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=dict, blank=True)
    total = models.IntegerField(default=0)
    processed = models.IntegerField(default=0)
    encoded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id} ({self.state})"

    @property
    def progress(self) -> float:
        return round(self.processed / self.total, 4) if self.total else (
            1.0 if self.state == self.State.SUCCEEDED else 0.0)
