from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.ids import ID_RULE, IdRelatedField, parse_id
from core.parsers import OneValuePerField, refuse_repeated
from people.models import Person
from people.serializers import ThresholdField

# The most face ids one encoding job may name (a longer IN list overflows SQLite's parameters).
MAX_SCOPE_IDS = 10000


class _Options(OneValuePerField, serializers.Serializer):
    threshold = ThresholdField()
    gallery = serializers.CharField(required=False, allow_blank=True, max_length=200)
    keep = serializers.ChoiceField(
        choices=["none", "unknown", "all"], required=False, default="none",
        help_text='Keep faces as sightings (unknowns app): "unknown" keeps the unknown faces and clusters them '
                  'into unknown identities, "all" keeps every face. A kept face\'s answer has "sighting_id" '
                  '(and "cluster" when unknown).')


class RecognizeInputSerializer(_Options):
    image = serializers.FileField(allow_empty_file=True)
    match_count = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100)
    return_all_matches = serializers.BooleanField(required=False, default=False)


class BatchRecognizeInputSerializer(_Options):
    images = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    match_count = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100)
    return_all_matches = serializers.BooleanField(required=False, default=False)

    def to_internal_value(self, data):
        refuse_repeated(self, data)
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


class VerifyInputSerializer(OneValuePerField, serializers.Serializer):
    image_a = serializers.FileField(required=False, allow_empty_file=True)
    image_b = serializers.FileField(required=False, allow_empty_file=True)
    image = serializers.FileField(required=False, allow_empty_file=True)
    person_id = IdRelatedField(queryset=Person.objects.all(), required=False)
    threshold = ThresholdField()

    def validate(self, attrs):
        pair = "image_a" in attrs and "image_b" in attrs
        against_person = "image" in attrs and "person_id" in attrs
        if pair == against_person:
            raise serializers.ValidationError(
                "Send either image_a and image_b, or image and person_id.")
        return attrs


class CacheActionSerializer(OneValuePerField, serializers.Serializer):
    action = serializers.ChoiceField(choices=["reload", "clear"])


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["missing", "all"]},
                           {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                            "maxItems": MAX_SCOPE_IDS}]})
class EncodingsScopeField(serializers.Field):
    default_error_messages = {
        "invalid": 'scope must be "missing", "all" or a list of face ids.',
        "too_many": f"At most {MAX_SCOPE_IDS} face ids per job.",
        "invalid_id": f"Not face ids: {ID_RULE}.",
    }

    def to_internal_value(self, data):
        if data in ("missing", "all"):
            return data
        if not isinstance(data, list) or not data or not all(isinstance(x, int) and not isinstance(x, bool)
                                                             for x in data):
            self.fail("invalid")
        if len(data) > MAX_SCOPE_IDS:
            self.fail("too_many")
        if any(parse_id(x) is None for x in data):  # past the bigint: an overflow in the query (a 500)
            self.fail("invalid_id")
        return data

    def to_representation(self, value):
        return value


class EncodingsInputSerializer(OneValuePerField, serializers.Serializer):
    scope = EncodingsScopeField(default="missing")
