"""Cameras in the admin: the configuration is edited here and saved through streams.services (the
same checks, ``update_fields`` and audit records as the API); the worker's status and lease are
shown read-only. Source URLs are shown with their password as ***, in lists and in the form."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from core.audit.services import audit_context
from core.errors import ServiceError
from face_engine.live.source_url import redact
from streams import services
from streams.models import CONFIG_FIELDS, Camera, CameraWorker
from streams.selectors import camera_status_is_stale

STATE_COLOURS = {
    Camera.State.STOPPED: "#757575",
    Camera.State.CONNECTING: "#1565c0",
    Camera.State.CONNECTED: "#2e7d32",
    Camera.State.RECONNECTING: "#ef6c00",
}
STALE_COLOUR = "#c62828"
STATUS_FIELDS = ["state_badge", "last_error", "fps_in", "fps_analysed", "frames_in", "frames_analysed",
                 "frames_dropped", "last_frame_at", "status_at"]
LEASE_FIELDS = ["lease_owner", "lease_expires_at"]


def state_badge(camera: Camera) -> str:
    stale = camera_status_is_stale(camera)
    label = f"{camera.get_state_display()} (stale: no worker reports)" if stale else camera.get_state_display()
    return format_html('<span style="background:{};color:#fff;padding:2px 8px;border-radius:8px">{}</span>',
                       STALE_COLOUR if stale else STATE_COLOURS.get(camera.state, "#757575"), label)


class CameraForm(forms.ModelForm):
    """The configuration fields only, checked by the services' own checks. The source URL is shown
    redacted; sent back with its *** it keeps the stored password."""

    class Meta:
        model = Camera
        fields = list(CONFIG_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["source_url"] = redact(self.instance.source_url)
        self.fields["source_url"].help_text += " A password shows as ***; leave it so to keep the stored one."

    def _check(self, field: str):
        try:
            return services.check_field(field, self.cleaned_data[field], camera=self._stored())
        except services.CameraFieldError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc

    def _stored(self) -> Camera | None:
        # construct_instance has not run yet while fields are cleaned: the instance is as stored.
        return self.instance if self.instance.pk is not None else None

    def clean_name(self):
        return self._check("name")

    def clean_source_url(self):
        return self._check("source_url")

    def clean_analysis_fps(self):
        return self._check("analysis_fps")

    def clean_min_face_size(self):
        return self._check("min_face_size")


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    form = CameraForm
    list_display = ["name", "source", "gallery", "enabled", "badge", "fps", "frames_dropped", "last_frame_at",
                    "worker"]
    list_filter = ["enabled", "state", "gallery"]
    search_fields = ["name"]
    list_select_related = ["gallery"]
    readonly_fields = [*STATUS_FIELDS, *LEASE_FIELDS, "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": list(CONFIG_FIELDS)}),
        ("Live status (reported by the camera worker)", {"fields": STATUS_FIELDS}),
        ("Lease", {"fields": LEASE_FIELDS}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="source")
    def source(self, camera):
        return redact(camera.source_url)

    @admin.display(description="state", ordering="state")
    def badge(self, camera):
        return state_badge(camera)

    @admin.display(description="state")
    def state_badge(self, camera):
        return state_badge(camera)

    @admin.display(description="fps in / analysed")
    def fps(self, camera):
        return f"{camera.fps_in:.1f} / {camera.fps_analysed:.1f}"

    @admin.display(description="worker", ordering="lease_owner")
    def worker(self, camera):
        return camera.lease_owner or "-"

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj is not None else self.fieldsets[:1]  # a new camera has no status yet

    def save_model(self, request, obj, form, change):
        who = audit_context(request)
        if change:
            # A fresh copy, and only what this form changed: a stale one would undo another
            # operator's edit, and the services never write the worker's columns anyway.
            camera = Camera.objects.get(pk=obj.pk)
            services.camera_update(camera=camera, **{f: form.cleaned_data[f] for f in form.changed_data}, **who)
        else:
            camera = services.camera_create(**{f: form.cleaned_data[f] for f in CONFIG_FIELDS}, **who)
            obj.pk = camera.pk
            obj._state.adding = False
            obj._state.db = camera._state.db

    def save_related(self, request, form, formsets, change):
        pass  # no relations besides the gallery, which the service saved; form.save_m2m would save nothing

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            # The form's checks passed but the write was refused (a concurrent write took the name
            # meanwhile): the admin's transaction rolled back; say why instead of a server error.
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        services.camera_delete(camera=obj, **audit_context(request))

    def delete_queryset(self, request, queryset):
        for camera in queryset:
            services.camera_delete(camera=camera, **audit_context(request))


@admin.register(CameraWorker)
class CameraWorkerAdmin(admin.ModelAdmin):
    """The camera workers alive (or lately so), read-only: the workers write these rows."""

    list_display = ["name", "capacity", "cameras", "started_at", "heartbeat_at"]
    readonly_fields = ["name", "capacity", "started_at", "heartbeat_at"]

    @admin.display(description="cameras held")
    def cameras(self, worker: CameraWorker) -> int:
        return Camera.objects.filter(lease_owner=worker.name).count()

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
