from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.ids import IdField
from core.parsers import OneValuePerField
from corrections.models import NegativeFace


class CorrectionInputSerializer(serializers.Serializer):
    event = IdField(required=False, allow_null=True, help_text="The event whose face is corrected.")
    sighting = IdField(required=False, allow_null=True, help_text="The sighting whose face is corrected.")
    verdict = serializers.ChoiceField(choices=[("not", "not this person"), ("is", "is this person")],
                                      help_text='"not": the face is not `person` (by default, whom it was named '
                                                'after); "is": the face is `person`.')
    person = IdField(required=False, allow_null=True,
                     help_text='Required for "is". For "not", defaults to the person the face was named after.')
    force = serializers.BooleanField(default=False, help_text='"is": enrol despite the quality gate or a possible '
                                                              'duplicate (their reasons come back as warnings).')

    def validate(self, data: dict) -> dict:
        if (data.get("event") is None) == (data.get("sighting") is None):
            raise serializers.ValidationError("Send exactly one of event or sighting.")
        if data["verdict"] == "is" and data.get("person") is None:
            raise serializers.ValidationError({"person": ['Required for "is": the person the face is.']})
        return data


class NegativeFaceSerializer(serializers.ModelSerializer):
    person_id = serializers.IntegerField(read_only=True)
    person_name = serializers.CharField(source="person.name", read_only=True)
    event_id = serializers.IntegerField(read_only=True, allow_null=True)
    sighting_id = serializers.IntegerField(read_only=True, allow_null=True)
    created_by = serializers.SerializerMethodField()
    crop_url = serializers.SerializerMethodField()

    class Meta:
        model = NegativeFace
        fields = ["id", "person_id", "person_name", "source", "event_id", "sighting_id", "model", "created_by",
                  "created_at", "crop_url"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, negative: NegativeFace) -> str | None:
        return negative.created_by.get_username() if negative.created_by_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_crop_url(self, negative: NegativeFace) -> str | None:
        return reverse("negative-crop", args=[negative.pk]) if negative.crop else None


class CorrectionSerializer(serializers.Serializer):
    """What a correction did. "not": ``negative``, ``created``, ``cleared``, ``unknown_sighting_id``;
    "is": ``face_id``, ``duplicate``, ``previous_person_id``, ``warnings``. The others are null."""

    verdict = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)
    sighting_id = serializers.IntegerField(allow_null=True)
    person_id = serializers.IntegerField()
    person_name = serializers.CharField()
    negative = NegativeFaceSerializer(allow_null=True, help_text='"not": the negative example kept.')
    created = serializers.BooleanField(allow_null=True, help_text='"not": false when it was already kept.')
    cleared = serializers.BooleanField(allow_null=True,
                                       help_text='"not": the face was named after the person and no longer is.')
    unknown_sighting_id = serializers.IntegerField(allow_null=True,
                                                   help_text='"not": the unknown sighting the face now is.')
    cluster_id = serializers.IntegerField(allow_null=True, help_text='"not": its unknown cluster.')
    face_id = serializers.IntegerField(allow_null=True, help_text='"is": the face enrolled from the crop.')
    duplicate = serializers.BooleanField(allow_null=True, help_text='"is": the crop was already enrolled.')
    previous_person_id = serializers.IntegerField(allow_null=True, help_text='"is": whom it was named after.')
    warnings = serializers.ListField(child=serializers.JSONField(), allow_null=True,
                                     help_text='"is" with force: what the quality gate or duplicate check said.')


class NegativeFilterSerializer(OneValuePerField, serializers.Serializer):
    person = IdField(required=False, help_text="Only this person's negatives.")
