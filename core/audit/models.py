from django.conf import settings
from django.db import models


class AuditRecord(models.Model):
    """Who wrote to people, faces or galleries, or asked for a recognition; when; which ids.

    Written in the same transaction as the write it describes. ``details`` holds ids, counts and
    field names, never names or photos: the trail outlives the people it mentions.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    # Kept when the user is deleted; blank for writes with no user (management commands).
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40)  # "<entity>.<verb>", e.g. "face.enrol"
    target_type = models.CharField(max_length=20, blank=True)  # "gallery", "person", "face"
    target_ids = models.JSONField(default=list, blank=True)
    request_id = models.CharField(max_length=128, blank=True)  # as core.middleware accepts
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["action", "created_at"], name="audit_action_created")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_ids} by {self.actor_name or '-'}"
