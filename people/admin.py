from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.audit.services import audit_context, audit_record
from core.index.holder import index_cache
from jobs.services import batch_generate_encodings, regenerate_all_encodings
from people import services
from people.admin_duplicates import duplicate_urls
from people.index_log import index_faces_changed
from people.models import Face, Gallery, Person
from people.quality import quality_dict

STATUS_COLOURS = {
    Face.Status.ENCODED: "#2e7d32",
    Face.Status.PENDING: "#757575",
    Face.Status.NO_FACE: "#ef6c00",
    Face.Status.MULTIPLE_FACES: "#ef6c00",
    Face.Status.FAILED: "#c62828",
    Face.Status.REFUSED: "#c62828",
}
QUALITY_REASONS = [
    ("face_too_small", "face too small"),
    ("blurry", "blurry"),
    ("extreme_pose", "extreme pose"),
    ("low_confidence", "low confidence"),
    ("cut_off", "cut off by the edge"),
]


def _file_url(face: Face, name: str) -> str:
    return reverse(name, args=[face.pk])  # served to authenticated users only


def status_badge(face: Face) -> str:
    colour = STATUS_COLOURS.get(face.status, "#757575")
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:8px">{}</span>',
        colour, face.get_status_display(),
    )


def image_with_box(face: Face, width: int = 160) -> str:
    """The stored photo scaled to ``width`` with the face box drawn over it."""
    if not face.image:
        return "-"
    if face.box_top is None or not face.image_width or not face.image_height:
        return format_html('<img src="{}" style="width:{}px">', _file_url(face, "face-image"), width)
    scale = width / face.image_width
    return format_html(
        '<div style="position:relative;width:{}px;height:{}px">'
        '<img src="{}" style="width:{}px;height:{}px">'
        '<div style="position:absolute;left:{}px;top:{}px;width:{}px;height:{}px;'
        'border:2px solid #2e7d32"></div></div>',
        width, round(face.image_height * scale), _file_url(face, "face-image"), width,
        round(face.image_height * scale),
        round(face.box_left * scale), round(face.box_top * scale),
        round((face.box_right - face.box_left) * scale), round((face.box_bottom - face.box_top) * scale),
    )


def encoding_size(face: Face) -> str:
    return f"{len(face.embedding)} bytes" if face.embedding else "-"


def quality_summary(face: Face) -> str:
    """The quality record in one line: the reasons it fails (and whether forced), or "ok"."""
    record = quality_dict(face)
    if record is None:
        return "-"
    reasons = ", ".join(record["reasons"]) or "ok"
    return f"{reasons} (forced)" if record["forced"] else reasons


def quality_table(face: Face) -> str:
    record = quality_dict(face)
    if record is None:
        return "not measured yet"
    rows = [("face size", f"{record['face_size']:.0f} px"), ("sharpness", f"{record['sharpness']:.1f}"),
            ("yaw / pitch / roll", f"{record['yaw']:.0f}° / {record['pitch']:.0f}° / {record['roll']:.0f}°"),
            ("detection score", f"{record['detection_score']:.2f}"),
            ("cut off", f"{100 * record['cut_off']:.0f} %"),
            ("fails", ", ".join(record["reasons"]) or "nothing"),
            ("forced", "yes" if record["forced"] else "no")]
    return format_html('<table class="quality">{}</table>',
                       format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))


class QualityReasonFilter(admin.SimpleListFilter):
    title = "quality"
    parameter_name = "quality"

    def lookups(self, request, model_admin):
        return [("ok", "passes"), ("any", "fails something"), *QUALITY_REASONS, ("forced", "forced")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "ok":
            return queryset.filter(quality_face_size__isnull=False, quality_reasons=[])
        if value == "any":
            return queryset.filter(quality_face_size__isnull=False).exclude(quality_reasons=[])
        if value == "forced":
            return queryset.filter(quality_forced=True)
        if value in dict(QUALITY_REASONS):
            # A JSON list of codes: its text holds "code" with the quotes (SQLite has no JSON contains).
            return queryset.filter(quality_reasons__icontains=f'"{value}"')
        return queryset


class FaceInline(admin.TabularInline):
    model = Face
    extra = 0
    can_delete = False  # delete through the Face admin, which also removes the files
    fields = ["photo", "badge", "encoding", "detection_score", "quality", "error", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # photos are enrolled through the API or enroll_folder, which encode them

    @admin.display(description="photo and box")
    def photo(self, face):
        return image_with_box(face)

    @admin.display(description="status")
    def badge(self, face):
        return status_badge(face)

    @admin.display(description="encoding")
    def encoding(self, face):
        return encoding_size(face)

    @admin.display(description="quality")
    def quality(self, face):
        return quality_summary(face)


def _queue(modeladmin, request, face_ids, what: str) -> None:
    if not face_ids:
        modeladmin.message_user(request, "Nothing to encode.", messages.WARNING)
        return
    job = batch_generate_encodings(face_ids, user=request.user, request_id=audit_context(request)["request_id"])
    modeladmin.message_user(request, f"{what}: job {job.pk} queued for {len(face_ids)} face(s).")


@admin.action(description="Encode selected faces (those not encoded yet)")
def encode_selected(modeladmin, request, queryset):
    _queue(modeladmin, request, list(queryset.exclude(status=Face.Status.ENCODED).values_list("id", flat=True)),
           "Encode")


@admin.action(description="Re-encode selected faces")
def reencode_selected(modeladmin, request, queryset):
    _queue(modeladmin, request, list(queryset.values_list("id", flat=True)), "Re-encode")


@admin.action(description="Re-encode every face (all people)")
def reencode_all(modeladmin, request, queryset):
    job = regenerate_all_encodings(user=request.user, request_id=audit_context(request)["request_id"])
    modeladmin.message_user(request, f"Re-encode all: job {job.pk} queued.")


@admin.action(description="Enrol the selected refused faces anyway (override the quality gate)")
def force_refused(modeladmin, request, queryset):
    # Forced faces skip the gate when the job encodes them (people/enrolment.py face_encode_many).
    with transaction.atomic():
        ids = list(queryset.filter(status=Face.Status.REFUSED).values_list("id", flat=True))
        Face.objects.filter(pk__in=ids).update(quality_forced=True)
        if ids:
            audit_record(action="face.force", target_type="face", target_ids=ids, details={},
                         **audit_context(request))
    _queue(modeladmin, request, ids, "Force")


@admin.action(description="Reload the recognition index")
def reload_index(modeladmin, request, queryset):
    loaded = len(index_cache.reload())
    modeladmin.message_user(request, f"Index rebuild asked of every process; {loaded} encodings answering here now.")


@admin.action(description="Clear the recognition index (rebuilt on next use)")
def clear_index(modeladmin, request, queryset):
    index_cache.clear()
    modeladmin.message_user(request, "Index cleared in this process.")


class FaceForm(forms.ModelForm):
    """The only editable field is the person: moving a photo to whoever it really shows."""

    class Meta:
        model = Face
        fields = ["person"]

    def clean_person(self):
        person = self.cleaned_data["person"]
        face = self.instance
        if face.pk and person.pk != face.person_id and \
                Face.objects.filter(person=person, sha256=face.sha256).exists():
            raise forms.ValidationError(f"{person} already has this photo.")
        return person


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    form = FaceForm
    list_display = ["id", "thumb", "person", "badge", "encoding", "quality", "size", "sharpness", "yaw",
                    "pitch", "roll", "score", "cut_off", "model", "created_at"]
    list_filter = ["status", QualityReasonFilter, "model"]
    search_fields = ["person__name", "person__external_id", "sha256"]
    list_select_related = ["person"]
    readonly_fields = ["photo", "badge", "encoding", "sha256", "box_top", "box_right", "box_bottom",
                       "box_left", "image_width", "image_height", "detection_score", "model",
                       "encoded_at", "created_at", "error", "status", "quality_record"]
    fields = ["person", "photo", "badge", "error", "quality_record", "encoding", "model", "sha256",
              "detection_score", "encoded_at", "created_at"]
    actions = [encode_selected, reencode_selected, reencode_all, force_refused, reload_index, clear_index]

    def has_add_permission(self, request):
        return False

    @admin.display(description="face")
    def thumb(self, face):
        if not face.thumbnail:
            return "-"
        return format_html('<img src="{}" style="width:48px;height:48px">', _file_url(face, "face-thumbnail"))

    @admin.display(description="photo and box")
    def photo(self, face):
        return image_with_box(face, width=320)

    @admin.display(description="status", ordering="status")
    def badge(self, face):
        return status_badge(face)

    @admin.display(description="encoding")
    def encoding(self, face):
        return encoding_size(face)

    @admin.display(description="quality")
    def quality(self, face):
        return quality_summary(face)

    @admin.display(description="quality record")
    def quality_record(self, face):
        return quality_table(face)

    @admin.display(description="size", ordering="quality_face_size")
    def size(self, face):
        return _number(face.quality_face_size, "{:.0f}")

    @admin.display(description="sharpness", ordering="quality_sharpness")
    def sharpness(self, face):
        return _number(face.quality_sharpness, "{:.1f}")

    # Sorted by the signed angle: the far-turned faces gather at both ends.
    @admin.display(description="yaw", ordering="quality_yaw")
    def yaw(self, face):
        return _number(face.quality_yaw, "{:.0f}°")

    @admin.display(description="pitch", ordering="quality_pitch")
    def pitch(self, face):
        return _number(face.quality_pitch, "{:.0f}°")

    @admin.display(description="roll", ordering="quality_roll")
    def roll(self, face):
        return _number(face.quality_roll, "{:.0f}°")

    @admin.display(description="score", ordering="detection_score")
    def score(self, face):
        return _number(face.detection_score, "{:.2f}")

    @admin.display(description="cut off", ordering="quality_cut_off")
    def cut_off(self, face):
        return _number(None if face.quality_cut_off is None else 100 * face.quality_cut_off, "{:.0f} %")

    def save_model(self, request, obj, form, change):
        # The admin saves inside a transaction: the record commits or rolls back with the change.
        super().save_model(request, obj, form, change)
        if "person" in form.changed_data:
            index_faces_changed([obj.pk])  # the index maps this face to its person
            audit_record(action="face.update", target_type="face", target_ids=[obj.pk],
                         details={"fields": ["person"], "person_id": obj.person_id,
                                  "from_person_id": form.initial.get("person")},
                         **audit_context(request))

    def delete_model(self, request, obj):
        services.face_delete(face=obj, **audit_context(request))

    def delete_queryset(self, request, queryset):
        for face in queryset:
            services.face_delete(face=face, **audit_context(request))


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


@admin.action(description="Encode the faces of the selected people")
def encode_people(modeladmin, request, queryset):
    ids = list(Face.objects.filter(person__in=queryset).exclude(status=Face.Status.ENCODED)
               .values_list("id", flat=True))
    _queue(modeladmin, request, ids, "Encode")


@admin.action(description="Re-encode the faces of the selected people")
def reencode_people(modeladmin, request, queryset):
    _queue(modeladmin, request, list(Face.objects.filter(person__in=queryset).values_list("id", flat=True)),
           "Re-encode")


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "external_id", "face_total", "created_at"]
    search_fields = ["name", "external_id"]
    list_filter = ["galleries"]
    filter_horizontal = ["galleries"]
    inlines = [FaceInline]
    actions = [encode_people, reencode_people, reload_index, clear_index]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(face_count=Count("faces", distinct=True))

    def get_urls(self):
        return duplicate_urls(self) + super().get_urls()  # before <path:object_id>/, which would take it

    @admin.display(description="faces", ordering="face_count")
    def face_total(self, person):
        return person.face_count

    def delete_model(self, request, obj):
        services.person_delete(person=obj, **audit_context(request))

    def delete_queryset(self, request, queryset):
        for person in queryset:
            services.person_delete(person=person, **audit_context(request))

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        with transaction.atomic():
            person = form.instance
            audit_record(action="person.update" if change else "person.create", target_type="person",
                         target_ids=[person.pk],
                         details={"fields": sorted(form.changed_data),
                                  "galleries": sorted(person.galleries.values_list("id", flat=True))},
                         **audit_context(request))


@admin.register(Gallery)
class GalleryAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "slug", "member_count"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_total=Count("people", distinct=True))

    @admin.display(description="people", ordering="member_total")
    def member_count(self, gallery):
        return gallery.member_total

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(action="gallery.update" if change else "gallery.create", target_type="gallery",
                     target_ids=[obj.pk], details={"slug": obj.slug, "fields": sorted(form.changed_data)},
                     **audit_context(request))

    def delete_model(self, request, obj):
        services.gallery_delete(gallery=obj, **audit_context(request))

    def delete_queryset(self, request, queryset):
        for gallery in queryset:
            services.gallery_delete(gallery=gallery, **audit_context(request))
