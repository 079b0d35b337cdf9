from rest_framework import serializers

from core.audit.models import AuditRecord
from core.ids import IdField
from core.parsers import OneValuePerField


class AuditFilterSerializer(OneValuePerField, serializers.Serializer):
    action = serializers.CharField(required=False, allow_blank=True, max_length=100)
    actor = serializers.CharField(required=False, allow_blank=True, max_length=150, help_text="Username.")
    target_type = serializers.CharField(required=False, allow_blank=True, max_length=100)
    target_id = IdField(required=False)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; records at or after.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; records before.")


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = ["id", "created_at", "action", "actor", "actor_name", "target_type", "target_ids",
                  "request_id", "details"]
