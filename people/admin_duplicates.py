"""The admin's "Possible duplicates" page: the pairs of people whose faces are within a threshold
(people.duplicates.duplicate_scan), linked from the Person changelist's object tools
(templates/admin/people/person/change_list.html) and routed by PersonAdmin.get_urls."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from people.duplicates import DEFAULT_LIMIT, duplicate_scan
from people.models import Gallery

MAX_LIMIT = 1000


class DuplicateForm(forms.Form):
    threshold = forms.FloatField(
        required=False, min_value=0.0, max_value=2.0,
        help_text="Distance under which two faces count as the same person (empty: FACE_MATCH_THRESHOLD). "
                  "On a large gallery a lower one (0.45–0.5) leaves fewer chance look-alikes.")
    gallery = forms.ModelChoiceField(queryset=Gallery.objects.all(), required=False, empty_label="All people")
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, initial=DEFAULT_LIMIT,
                               help_text="Show at most this many pairs, the nearest.")

    def clean_threshold(self):
        value = self.cleaned_data["threshold"]
        if value is not None and not value > 0:  # min_value lets 0 through; NaN fails every comparison
            raise forms.ValidationError("Must be more than 0 (and at most 2).")
        return value


def duplicates_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = DuplicateForm(request.GET or None)
    scan = None
    if not form.is_bound:
        scan = duplicate_scan(limit=DEFAULT_LIMIT)
    elif form.is_valid():
        data = form.cleaned_data
        scan = duplicate_scan(threshold=data["threshold"], gallery=data["gallery"],
                              limit=data["limit"] or DEFAULT_LIMIT)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Possible duplicates",
        "opts": opts,
        "form": form,
        "scan": scan,
        "default_threshold": settings.FACE_ENGINE.match_threshold,
        "shown": len(scan.pairs) if scan else 0,
    }
    return TemplateResponse(request, "admin/people/person/duplicates.html", context)


def duplicate_urls(model_admin) -> list:
    opts = model_admin.model._meta
    view = model_admin.admin_site.admin_view(lambda request: duplicates_view(model_admin, request))
    return [path("duplicates/", view, name=f"{opts.app_label}_{opts.model_name}_duplicates")]
