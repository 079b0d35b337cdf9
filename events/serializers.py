from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from core.ids import IdField, parse_id
from core.parsers import OneValuePerField
from events.models import Event
from streams.models import Camera
from streams.selectors import camera_by_ref


def _camera(value: str) -> Camera:
    camera = camera_by_ref(value)
    if camera is None:
        raise serializers.ValidationError(f"No camera with id or name {value.strip()!r}.")
    return camera


class EventFilterSerializer(OneValuePerField, serializers.Serializer):
    """Query parameters of the event list; every bad value is a 400 naming its parameter."""

    camera = serializers.CharField(required=False, max_length=200, help_text="Camera id or name.")
    person = IdField(required=False, help_text="Person id.")
    gallery = serializers.CharField(required=False, max_length=200, help_text="Gallery id or slug.")
    unknown = serializers.BooleanField(required=False, allow_null=True, default=None,
                                       help_text="true: unknown faces only; false: known people only.")
    source = serializers.ChoiceField(choices=Event.Source.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; events first seen at or after.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; events first seen before.")
    open = serializers.BooleanField(required=False, allow_null=True, default=None,
                                    help_text="true: still in view (not closed); false: closed.")

    def validate_camera(self, value: str) -> Camera:
        return _camera(value)

    def validate_gallery(self, value: str) -> str:
        text = value.strip()
        if text.isdigit() and parse_id(text) is None:
            raise serializers.ValidationError(f"No gallery with id or slug {text!r}.")
        return text

    def validate(self, data: dict) -> dict:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and until < since:
            raise serializers.ValidationError({"until": "until must not be before since."})
        return data


class EventSerializer(serializers.ModelSerializer):
    # The name faces and recognition answers use for the person's id (``person`` stays for the
    # clients of the first events API).
    person_id = serializers.IntegerField(read_only=True, allow_null=True)
    person_name = serializers.SerializerMethodField()
    time_to_name_ms = serializers.SerializerMethodField()
    crop_url = serializers.SerializerMethodField()
    has_embedding = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["id", "uid", "source", "camera", "source_name", "gallery", "kind", "person", "person_id",
                  "person_name", "distance", "confidence", "threshold", "first_seen", "named_at", "last_seen",
                  "closed_at", "time_to_name_ms", "frames_seen", "frames_recognised", "face_box", "face_size",
                  "sharpness", "crop_url", "has_embedding"]
        read_only_fields = fields

    def get_person_name(self, event: Event) -> str | None:
        return event.person.name if event.person_id else None

    def get_time_to_name_ms(self, event: Event) -> float:
        return round(event.time_to_name_ms, 1)

    def get_crop_url(self, event: Event) -> str | None:
        # A path, not an absolute URL: events also travel without a request (feeds, webhooks).
        return reverse("event-crop", args=[event.pk]) if event.crop else None

    def get_has_embedding(self, event: Event) -> bool:
        return bool(event.embedding)
