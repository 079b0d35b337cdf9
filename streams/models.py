"""Cameras: configuration (written through the API and the admin), the lease a camera worker holds
on it, and the live status that worker reports."""

from __future__ import annotations

from django.db import models

from people.models import Gallery

# The fields the API and the admin write; the worker's lease and status fields are written with
# ``QuerySet.update`` only, so neither side overwrites the other's columns with a stale copy.
CONFIG_FIELDS = ("name", "source_url", "gallery", "analysis_fps", "min_face_size", "enabled")


class Camera(models.Model):
    class State(models.TextChoices):
        STOPPED = "stopped", "Stopped"  # no worker runs it (disabled, or not claimed yet)
        CONNECTING = "connecting", "Connecting"
        CONNECTED = "connected", "Connected"
        RECONNECTING = "reconnecting", "Reconnecting"  # the source failed; retrying with backoff

    name = models.CharField(max_length=100, unique=True)
    source_url = models.CharField(
        max_length=2000,
        help_text="rtsp://…, http(s)://… (MJPEG) or file://… (a video under CAMERA_FILE_ROOT; ?loop=1 loops it).",
    )
    gallery = models.ForeignKey(Gallery, null=True, blank=True, on_delete=models.SET_NULL, related_name="cameras",
                                help_text="Only people of this gallery are named; empty: everyone.")
    analysis_fps = models.FloatField(default=5.0, help_text="Frames per second analysed (the newest frame each time).")
    min_face_size = models.PositiveIntegerField(default=80, help_text="Smallest face to find, in pixels.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)  # moves with configuration changes only

    # Lease: which camera worker runs this camera, until when (renewed by its heartbeat).
    lease_owner = models.CharField(max_length=200, blank=True, default="", db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    # Live status, reported by the worker holding the lease.
    state = models.CharField(max_length=20, choices=State.choices, default=State.STOPPED)
    fps_in = models.FloatField(default=0.0)
    fps_analysed = models.FloatField(default=0.0)
    frames_in = models.BigIntegerField(default=0)
    frames_analysed = models.BigIntegerField(default=0)
    frames_dropped = models.BigIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    last_frame_at = models.DateTimeField(null=True, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def connected(self) -> bool:
        return self.state == self.State.CONNECTED


class CameraWorker(models.Model):
    """A running camera worker, seen by the others: they share the cameras evenly among the
    workers whose heartbeat is recent (``streams.leases.fair_share``)."""

    name = models.CharField(max_length=200, unique=True)
    capacity = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
