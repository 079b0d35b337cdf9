"""Read-only admin for recognition events: written by the live pipeline only, deletable by staff
(the crop file goes with the row, after commit, through the post_delete signal)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from events.models import Event


def _admin_link(obj, name: str) -> str:
    if obj is None:
        return "-"
    try:
        url = reverse(name, args=[obj.pk])
    except NoReverseMatch:  # that model has no admin page
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


def _crop(event: Event, width: int) -> str:
    if not event.crop:
        return "-"
    # Served by the API to authenticated users (the admin's session): never public media.
    return format_html('<img src="{}" alt="face" style="width:{}px;height:auto">',
                       reverse("event-crop", args=[event.pk]), width)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["source_name", "person_link", "kind", "first_seen", "named_at", "closed_at", "time_to_name",
                    "thumb"]
    list_filter = ["kind", "source", "camera", "gallery"]
    list_select_related = ["person", "camera", "gallery"]
    date_hierarchy = "first_seen"
    search_fields = ["person__name", "source_name"]
    fields = ["crop_large", "uid", "kind", "source", "camera_link", "source_name", "user", "gallery",
              "person_link", "distance", "confidence", "threshold", "first_seen", "named_at", "time_to_name",
              "last_seen", "closed_at", "track_id", "frames_seen", "frames_recognised", "face_box", "face_size",
              "sharpness", "embedding_size", "created_at", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="person", ordering="person__name")
    def person_link(self, event: Event) -> str:
        return _admin_link(event.person, "admin:people_person_change")

    @admin.display(description="camera")
    def camera_link(self, event: Event) -> str:
        return _admin_link(event.camera, "admin:streams_camera_change")

    @admin.display(description="time to name")
    def time_to_name(self, event: Event) -> str:
        return f"{event.time_to_name_ms:.0f} ms"

    @admin.display(description="face")
    def thumb(self, event: Event) -> str:
        return _crop(event, 48)

    @admin.display(description="best face")
    def crop_large(self, event: Event) -> str:
        return _crop(event, 240)

    @admin.display(description="embedding")
    def embedding_size(self, event: Event) -> str:
        return f"{len(event.embedding)} bytes" if event.embedding else "-"
