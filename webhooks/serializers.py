from __future__ import annotations

from rest_framework import serializers
from rest_framework.fields import empty

from core.ids import IdListField
from core.parsers import OneValuePerField
from people.models import Person
from streams.models import Camera
from webhooks import services
from webhooks.models import KINDS, PHASES, Delivery, Subscription


class _OptionalBooleanField(serializers.BooleanField):
    # A boolean missing from form-encoded input stays missing (DRF would read it as False).
    default_empty_html = empty


class SubscriptionInputSerializer(OneValuePerField, serializers.Serializer):
    name = serializers.CharField(help_text="1 to 100 characters.")
    url = serializers.CharField(trim_whitespace=False, help_text="http(s):// URL; its host must resolve to public "
                                                                 "addresses unless WEBHOOK_ALLOW_PRIVATE.")
    secret = serializers.CharField(required=False, trim_whitespace=False,
                                   help_text="HMAC key, 16 to 200 characters; generated when left out.")
    active = _OptionalBooleanField(required=False, help_text="Default true.")
    kinds = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20,
                                  help_text=f"Any of {', '.join(KINDS)} (default both).")
    phases = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20,
                                   help_text=f"Any of {', '.join(PHASES)} (default opened).")
    people = IdListField(queryset=Person.objects.all(), required=False, help_text="Person ids; empty: anyone.")
    cameras = IdListField(queryset=Camera.objects.all(), required=False, help_text="Camera ids; empty: any source.")

    def _check(self, field: str, value):
        try:
            return services.check_field(field, value)
        except services.FieldError as exc:
            raise serializers.ValidationError(exc.message) from exc

    def validate_name(self, value):
        return self._check("name", value)

    def validate_url(self, value):
        return self._check("url", value)

    def validate_secret(self, value):
        return self._check("secret", value)

    def validate_kinds(self, value):
        return self._check("kinds", value)

    def validate_phases(self, value):
        return self._check("phases", value)


class SubscriptionOutputSerializer(serializers.ModelSerializer):
    people = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    cameras = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "name", "url", "secret", "active", "kinds", "phases", "people", "cameras", "created_by",
                  "created_at", "updated_at"]


class DeliverySerializer(serializers.ModelSerializer):
    delay_ms = serializers.FloatField(read_only=True, allow_null=True,
                                      help_text="From the event's decision (named_at) to its delivery.")

    class Meta:
        model = Delivery
        fields = ["id", "subscription", "event", "event_uid", "phase", "state", "attempts", "next_attempt_at",
                  "last_status_code", "last_error", "last_latency_ms", "attempt_log", "named_at", "created_at",
                  "delivered_at", "delay_ms", "payload"]


class DeliveryFilterSerializer(OneValuePerField, serializers.Serializer):
    state = serializers.ChoiceField(choices=Delivery.State.choices, required=False)
