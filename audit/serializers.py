from rest_framework import serializers

from audit.models import AuditRecord


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, allow_blank=True)
    actor = serializers.CharField(required=False, allow_blank=True, help_text="Username.")
    target_type = serializers.CharField(required=False, allow_blank=True)
    target_id = serializers.IntegerField(required=False, min_value=0)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; records at or after.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; records before.")


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = ["id", "created_at", "action", "actor", "actor_name", "target_type", "target_ids",
                  "request_id", "details"]
