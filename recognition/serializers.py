from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from people.models import Person


class _Options(serializers.Serializer):
    threshold = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    gallery = serializers.CharField(required=False, allow_blank=True)


class RecognizeInputSerializer(_Options):
    image = serializers.FileField(allow_empty_file=True)
    match_count = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100)
    return_all_matches = serializers.BooleanField(required=False, default=False)


class BatchRecognizeInputSerializer(_Options):
    images = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    match_count = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100)
    return_all_matches = serializers.BooleanField(required=False, default=False)

    def to_internal_value(self, data):
        if hasattr(data, "getlist"):
            files = data.getlist("images")
            data = {key: data.get(key) for key in data}
            data["images"] = files
        return super().to_internal_value(data)

    def validate_images(self, value):
        limit = settings.MAX_BATCH_IMAGES
        if len(value) > limit:
            raise serializers.ValidationError(
                f"At most {limit} images per request; {len(value)} were sent.")
        return value


class VerifyInputSerializer(serializers.Serializer):
    image_a = serializers.FileField(required=False, allow_empty_file=True)
    image_b = serializers.FileField(required=False, allow_empty_file=True)
    image = serializers.FileField(required=False, allow_empty_file=True)
    person_id = serializers.PrimaryKeyRelatedField(queryset=Person.objects.all(), required=False)
    threshold = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)

    def validate(self, attrs):
        pair = "image_a" in attrs and "image_b" in attrs
        against_person = "image" in attrs and "person_id" in attrs
        if pair == against_person:
            raise serializers.ValidationError(
                "Send either image_a and image_b, or image and person_id.")
        return attrs


class CacheActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["reload", "clear"])


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["missing", "all"]},
                           {"type": "array", "items": {"type": "integer"}}]})
class EncodingsScopeField(serializers.Field):
    default_error_messages = {
        "invalid": 'scope must be "missing", "all" or a list of face ids.',
    }

    def to_internal_value(self, data):
        if data in ("missing", "all"):
            return data
        if isinstance(data, list) and data and all(isinstance(x, int) and not isinstance(x, bool)
                                                   for x in data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class EncodingsInputSerializer(serializers.Serializer):
    scope = EncodingsScopeField(default="missing")
