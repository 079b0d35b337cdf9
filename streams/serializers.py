from __future__ import annotations

from urllib.parse import urlsplit

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from core.errors import ServiceError
from core.parsers import OneValuePerField
from face_engine.live.source_url import redact
from people.selectors import gallery_resolve
from streams import services
from streams.models import Camera
from streams.selectors import camera_status_is_stale

SOURCE_KINDS = {"rtsp": "rtsp", "rtsps": "rtsp", "http": "http", "https": "http", "file": "file"}


class _CheckedMixin:
    """Runs a field's shared check (streams.services) and keeps its error code, so the API can
    answer ``invalid_source`` or ``unknown_gallery`` when that is the only problem."""

    def _check(self, field: str, value):
        try:
            return services.check_field(field, value, camera=self.instance)
        except services.CameraFieldError as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from exc


@extend_schema_field(OpenApiTypes.STR)
class GalleryOrNullField(serializers.Field):
    """A gallery by id or slug; null or "" for none."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def to_internal_value(self, data):
        try:
            return gallery_resolve(data)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.message, code=exc.error_code) from exc

    def to_representation(self, value):
        return value.pk


class OptionalBooleanField(serializers.BooleanField):
    # DRF reads a boolean missing from form-encoded input as False (unchecked boxes are not
    # sent); here a missing ``enabled`` stays missing, so a form POST does not disable a camera.
    default_empty_html = empty


class CameraInputSerializer(OneValuePerField, _CheckedMixin, serializers.Serializer):
    name = serializers.CharField(help_text="1 to 100 characters, unique.")
    # No max_length here: parse_source's message says how long the URL is and what the limit is.
    source_url = serializers.CharField(help_text="rtsp(s)://, http(s):// (MJPEG) or file:// under CAMERA_FILE_ROOT "
                                                 "(?loop=1 loops it). A password given back as *** keeps the "
                                                 "stored one.")
    gallery = GalleryOrNullField(required=False, help_text="Gallery id or slug; null: everyone.")
    analysis_fps = serializers.FloatField(required=False, help_text="More than 0, at most 30 (default 5).")
    min_face_size = serializers.IntegerField(required=False, help_text="Pixels, 20 to 2000 (default 80).")
    enabled = OptionalBooleanField(required=False, help_text="Default true.")

    def validate_name(self, value):
        return self._check("name", value)

    def validate_source_url(self, value):
        return self._check("source_url", value)

    def validate_analysis_fps(self, value):
        return self._check("analysis_fps", value)

    def validate_min_face_size(self, value):
        return self._check("min_face_size", value)


class CameraFilterSerializer(OneValuePerField, serializers.Serializer):
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    gallery = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="Gallery id or slug.")
    search = serializers.CharField(required=False, allow_blank=True, max_length=100, help_text="Part of the name.")


class CameraStatusSerializer(serializers.Serializer):
    """The live status the worker holding the camera reports (read from the camera's own row)."""

    state = serializers.ChoiceField(choices=Camera.State.choices)
    connected = serializers.BooleanField()
    fps_in = serializers.FloatField()
    fps_analysed = serializers.FloatField()
    frames_in = serializers.IntegerField()
    frames_analysed = serializers.IntegerField()
    frames_dropped = serializers.IntegerField()
    last_error = serializers.CharField()
    last_frame_at = serializers.DateTimeField(allow_null=True)
    status_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.SerializerMethodField(help_text="The worker holding the lease, or null.")
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.SerializerMethodField(help_text="Not stopped, yet no report for 3 leases: the worker is gone.")

    def get_worker(self, camera) -> str | None:
        return camera.lease_owner or None

    def get_stale(self, camera) -> bool:
        return camera_status_is_stale(camera)


class CameraOutputSerializer(serializers.ModelSerializer):
    source_url = serializers.SerializerMethodField(help_text="The password, if any, shows as ***.")
    source_kind = serializers.SerializerMethodField()
    gallery = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    status = CameraStatusSerializer(source="*", read_only=True)

    class Meta:
        model = Camera
        fields = ["id", "name", "source_url", "source_kind", "gallery", "analysis_fps", "min_face_size",
                  "enabled", "created_at", "updated_at", "status"]

    def get_source_url(self, camera) -> str:
        return redact(camera.source_url)

    def get_source_kind(self, camera) -> str | None:
        try:
            scheme = urlsplit(camera.source_url).scheme.lower()
        except ValueError:
            return None
        return SOURCE_KINDS.get(scheme)
