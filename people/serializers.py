from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.parsers import JSONValueField, OneValuePerField, refuse_repeated
from people.models import Face, Gallery, Person
from people.quality import quality_dict
from people.selectors import gallery_by_ref


@extend_schema_field({"type": "number", "format": "double", "minimum": 0, "exclusiveMinimum": True, "maximum": 2})
class ThresholdField(serializers.FloatField):
    """A match threshold, a distance in (0, 2]: unit embeddings are at most 2 apart, and the
    confidence divides by the threshold (0 was a ZeroDivisionError: a 500)."""

    default_error_messages = {"positive": "Must be more than 0 (and at most 2)."}

    def __init__(self, **kwargs):
        super().__init__(required=False, min_value=0.0, max_value=2.0,
                         help_text="Distance under which two faces match: more than 0, at most 2.", **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not value > 0.0:
            self.fail("positive")
        return value


class GallerySerializer(OneValuePerField, serializers.ModelSerializer):
    person_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Gallery
        fields = ["id", "name", "slug", "description", "person_count", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"description": {"max_length": 10000}}


@extend_schema_field(OpenApiTypes.STR)
class GalleryRefField(serializers.Field):
    """A gallery given by id or slug."""

    default_error_messages = {"missing": "No gallery with id or slug {value!r}."}

    def to_internal_value(self, data):
        gallery = gallery_by_ref(data)
        if gallery is None:
            self.fail("missing", value=str(data).strip())
        return gallery

    def to_representation(self, value):
        return value.pk


class PersonInputSerializer(OneValuePerField, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    external_id = serializers.CharField(max_length=100, required=False, allow_null=True, allow_blank=True)
    # Checked as every JSON body is (core/parsers.py), a JSON string in a form field too.
    metadata = JSONValueField(required=False)
    galleries = serializers.ListField(child=GalleryRefField(), required=False, max_length=200)

    def validate_metadata(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.")
        return value

    def validate_external_id(self, value):
        value = value or None
        if value is not None:
            others = Person.objects.filter(external_id=value)
            if self.instance is not None:
                others = others.exclude(pk=self.instance.pk)
            if others.exists():
                raise serializers.ValidationError(f"external_id {value!r} is already used.")
        return value


class PersonOutputSerializer(serializers.ModelSerializer):
    galleries = serializers.SerializerMethodField()
    face_count = serializers.IntegerField(read_only=True, default=0)
    encoded_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Person
        fields = ["id", "name", "external_id", "metadata", "galleries", "face_count",
                  "encoded_count", "created_at", "updated_at"]

    def get_galleries(self, person) -> list[int]:
        return sorted(g.pk for g in person.galleries.all())


class FaceQualitySerializer(serializers.Serializer):
    """A face's quality record (people/quality.py): null until the face was encoded."""

    face_size = serializers.FloatField(help_text="Side of the inner face (eyebrows to lower lip), in pixels.")
    sharpness = serializers.FloatField(help_text="Variance of the Laplacian of the aligned face.")
    yaw = serializers.FloatField(help_text="Degrees, estimated from the 5 landmarks.")
    pitch = serializers.FloatField(help_text="Degrees, estimated from the 5 landmarks.")
    roll = serializers.FloatField(help_text="Degrees: the tilt of the eye line.")
    detection_score = serializers.FloatField()
    cut_off = serializers.FloatField(help_text="Share (0-1) of the face outside the photo.")
    reasons = serializers.ListField(child=serializers.CharField(),
                                    help_text="The quality thresholds the face fails (face_too_small, blurry, "
                                              "extreme_pose, low_confidence, cut_off).")
    forced = serializers.BooleanField(help_text="Enrolled with force over the gate or the duplicate check.")


class FaceSerializer(serializers.ModelSerializer):
    person_id = serializers.IntegerField(read_only=True)
    box = serializers.JSONField(read_only=True)
    image = serializers.SerializerMethodField()
    thumbnail = serializers.SerializerMethodField()
    has_embedding = serializers.SerializerMethodField()
    quality = serializers.SerializerMethodField()

    class Meta:
        model = Face
        fields = ["id", "person_id", "status", "error", "box", "image_width", "image_height",
                  "detection_score", "quality", "model", "sha256", "has_embedding", "image", "thumbnail",
                  "created_at", "encoded_at"]

    def get_has_embedding(self, face) -> bool:
        return bool(face.embedding)

    @extend_schema_field(FaceQualitySerializer(allow_null=True))
    def get_quality(self, face) -> dict | None:
        return quality_dict(face)

    def _url(self, face, name: str, present) -> str | None:
        if not present:
            return None
        path = reverse(name, args=[face.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_image(self, face) -> str | None:
        return self._url(face, "face-image", face.image)

    def get_thumbnail(self, face) -> str | None:
        return self._url(face, "face-thumbnail", face.thumbnail)


class EnrolInputSerializer(serializers.Serializer):
    image = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)
    largest = serializers.BooleanField(default=False)
    # Sent as "async" (a Python keyword, so renamed here).
    run_async = serializers.BooleanField(default=False)
    # Enrol over the quality gate and the duplicate check (the endpoint is staff-only).
    force = serializers.BooleanField(default=False)

    def to_internal_value(self, data):
        refuse_repeated(self, data)
        if hasattr(data, "getlist") and len(data.getlist("async")) > 1:
            raise serializers.ValidationError({"async": ["Sent more than once; send it once."]})
        if hasattr(data, "getlist"):
            files = data.getlist("image")
            data = {key: data.get(key) for key in data}
            data["image"] = files
        if "async" in data:
            data["run_async"] = data.pop("async")
        return super().to_internal_value(data)
