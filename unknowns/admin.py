"""Admin for unknown identities: clusters with their best crops and sightings; actions to name one
(an intermediate form), merge the selected into the oldest, or discard. Every action goes through
unknowns.services (atomic, audited); sightings are read-only (written by events and recognitions)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.audit.services import audit_context
from core.errors import ServiceError
from people.models import Gallery, Person
from unknowns import services
from unknowns.models import Sighting, UnknownCluster


def _crop(sighting: Sighting, width: int) -> str:
    if not sighting.crop:
        return "-"
    # Served by the API to authenticated users (the admin's session): never public media.
    return format_html('<img src="{}" alt="face" style="width:{}px;height:auto">',
                       reverse("sighting-crop", args=[sighting.pk]), width)


class SightingInline(admin.TabularInline):
    model = Sighting
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    fields = ["thumb", "seen_at", "source", "source_name", "event", "face_size", "sharpness", "distance"]
    readonly_fields = fields
    ordering = ["-seen_at", "-id"]

    @admin.display(description="face")
    def thumb(self, sighting: Sighting) -> str:
        return _crop(sighting, 64)


class NameForm(forms.Form):
    person = forms.ModelChoiceField(queryset=Person.objects.order_by("name", "id"), required=False,
                                    help_text="An existing person, or leave empty and give a new name.")
    name = forms.CharField(max_length=200, required=False, help_text="A new person's name.")
    galleries = forms.ModelMultipleChoiceField(queryset=Gallery.objects.order_by("name"), required=False,
                                               help_text="The new person's galleries.")
    force = forms.BooleanField(required=False, help_text="Enrol faces the quality gate would refuse.")

    def clean(self) -> dict:
        data = super().clean()
        if bool(data.get("person")) == bool(data.get("name", "").strip()):
            raise forms.ValidationError("Choose a person or give a new name (one of the two).")
        return data


@admin.register(UnknownCluster)
class UnknownClusterAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "person", "sighting_count", "first_seen", "last_seen", "best_faces"]
    list_filter = ["state"]
    list_select_related = ["person"]
    search_fields = ["number", "person__name"]
    ordering = ["-last_seen", "-id"]
    fields = ["best_faces_large", "number", "state", "person", "sighting_count", "first_seen", "last_seen",
              "named_at", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [SightingInline]
    actions = ["name_cluster", "merge_clusters", "discard_clusters"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # read-only: the actions below are the only writes

    def has_delete_permission(self, request, obj=None):
        return False  # discard (a tombstone) or retention: a deleted row would leave its sightings behind

    @admin.display(description="best faces")
    def best_faces(self, cluster: UnknownCluster) -> str:
        return format_html_join("", "{}", ((_crop(s, 40),) for s in services.best_sightings(cluster, 4))) or "-"

    @admin.display(description="best faces")
    def best_faces_large(self, cluster: UnknownCluster) -> str:
        return format_html_join("", "{}", ((_crop(s, 120),) for s in services.best_sightings(cluster, 6))) or "-"

    @admin.action(description="Name the selected cluster (one)")
    def name_cluster(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one cluster to name.", messages.ERROR)
            return None
        cluster = queryset.get()
        form = NameForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                result = services.cluster_name(
                    cluster=cluster, person=data["person"], name=None if data["person"] else data["name"].strip(),
                    galleries=data["galleries"] if not data["person"] else (), force=data["force"],
                    **audit_context(request))
            except ServiceError as exc:
                self.message_user(request, f"{cluster}: {exc.message}", messages.ERROR)
                return None
            refused = [f for f in result.faces if "error" in f]
            self.message_user(request, f"{cluster} named {result.person.name}: {result.enrolled} face(s) enrolled, "
                              f"{len(refused)} refused, {result.events} past event(s) renamed.", messages.SUCCESS)
            return None
        return TemplateResponse(request, "admin/unknowns/name.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "cluster": cluster, "form": form,
            "best": services.best_sightings(cluster, 6), "title": f"Name {cluster}",
        })

    @admin.action(description="Merge the selected clusters into the oldest")
    def merge_clusters(self, request, queryset):
        clusters = list(queryset.order_by("id"))
        if len(clusters) < 2:
            self.message_user(request, "Select two clusters or more to merge.", messages.ERROR)
            return
        into = clusters[0]
        try:
            for other in clusters[1:]:
                into = services.cluster_merge(cluster=into, other=other, **audit_context(request))
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"Merged into {into}: {into.sighting_count} sighting(s).", messages.SUCCESS)

    @admin.action(description="Discard the selected clusters (nobody to name)")
    def discard_clusters(self, request, queryset):
        done, refused = 0, []
        for cluster in queryset:
            try:
                services.cluster_discard(cluster=cluster, **audit_context(request))
                done += 1
            except ServiceError as exc:
                refused.append(exc.message)
        if done:
            self.message_user(request, f"{done} cluster(s) discarded.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)


@admin.register(Sighting)
class SightingAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source", "seen_at", "cluster", "matched_person", "thumb"]
    list_filter = ["source"]
    list_select_related = ["cluster", "matched_person"]
    date_hierarchy = "seen_at"
    fields = ["crop_large", "source", "event", "camera", "source_name", "seen_at", "box", "face_size", "sharpness",
              "matched_person", "distance", "cluster", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="face")
    def thumb(self, sighting: Sighting) -> str:
        return _crop(sighting, 48)

    @admin.display(description="face")
    def crop_large(self, sighting: Sighting) -> str:
        return _crop(sighting, 240)
