"""Admin for negatives: read only (written by corrections); deleting one undoes its "not" through
the service (index version bumped, audited; the crop goes after commit)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.audit.services import audit_context
from corrections.models import NegativeFace
from corrections.services import negative_delete


def _crop(negative: NegativeFace, width: int) -> str:
    if not negative.crop:
        return "-"
    # Served by the API to staff (the admin's session): never public media.
    return format_html('<img src="{}" alt="face" style="width:{}px;height:auto">',
                       reverse("negative-crop", args=[negative.pk]), width)


@admin.register(NegativeFace)
class NegativeFaceAdmin(admin.ModelAdmin):
    list_display = ["id", "person", "source", "event", "sighting", "created_by", "created_at", "thumb"]
    list_filter = ["source", "model"]
    list_select_related = ["person", "event", "sighting", "created_by"]
    search_fields = ["person__name"]
    fields = ["crop_large", "person", "source", "event", "sighting", "model", "created_by", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj: NegativeFace) -> None:
        negative_delete(negative=obj, **audit_context(request))

    def delete_queryset(self, request, queryset) -> None:
        for negative in queryset:
            negative_delete(negative=negative, **audit_context(request))

    @admin.display(description="face")
    def thumb(self, negative: NegativeFace) -> str:
        return _crop(negative, 48)

    @admin.display(description="face")
    def crop_large(self, negative: NegativeFace) -> str:
        return _crop(negative, 240)
