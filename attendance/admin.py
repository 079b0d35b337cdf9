"""The admin's "Attendance" page: a gallery, a day or a range of days, a time zone (and a camera)
give the table the API answers, and "Export CSV" the same file. Staff only; it reads, never writes."""

from __future__ import annotations

from datetime import date, datetime

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from attendance.exports import day_csv, day_filename, range_csv, range_filename
from attendance.models import AttendanceSheet
from attendance.selectors import (
    MAX_DATE,
    MAX_RANGE_DAYS,
    MIN_DATE,
    attendance_day,
    attendance_range,
    default_zone,
    local_today,
    zone_by_name,
    zone_names,
)
from attendance.serializers import iso
from people.models import Gallery
from streams.models import Camera

DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class AttendanceForm(forms.Form):
    gallery = forms.ModelChoiceField(queryset=Gallery.objects.order_by("name", "id"))
    start = forms.DateField(label="Date", widget=DATE_INPUT)
    end = forms.DateField(label="Until", required=False, widget=DATE_INPUT,
                          help_text=f"Empty: the one day. A range is at most {MAX_RANGE_DAYS} days.")
    time_zone = forms.ChoiceField(choices=())
    camera = forms.ModelChoiceField(queryset=Camera.objects.order_by("name"), required=False, empty_label="any",
                                    help_text="Only this camera's events count.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in sorted(zone_names())]

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        for name, value in (("start", start), ("end", end)):
            if value is not None and not MIN_DATE <= value <= MAX_DATE:
                self.add_error(name, f"Dates go from {MIN_DATE} to {MAX_DATE}.")
        if start is not None and end is not None:
            if end < start:
                self.add_error("end", "Until must not be before the date.")
            elif (end - start).days + 1 > MAX_RANGE_DAYS:
                self.add_error("end", f"A range is at most {MAX_RANGE_DAYS} days.")
        return data


def _time(moment: datetime | None, day: date | None = None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%H:%M:%S") if moment.date() == day else moment.strftime("%Y-%m-%d %H:%M:%S")


@admin.register(AttendanceSheet)
class AttendanceSheetAdmin(admin.ModelAdmin):
    """Not a list of rows: the changelist URL serves the attendance page, and nothing else is routed."""

    def has_module_permission(self, request) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        opts = self.model._meta
        return [path("", self.admin_site.admin_view(self.changelist_view),
                     name=f"{opts.app_label}_{opts.model_name}_changelist")]

    def changelist_view(self, request, extra_context=None):
        tz = default_zone()
        form = AttendanceForm(request.GET or None,
                              initial={"start": local_today(tz), "time_zone": settings.ATTENDANCE_TIME_ZONE})
        sheet = summary = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            tz = zone_by_name(data["time_zone"])
            start, end = data["start"], data["end"]
            if end is None or end == start:
                sheet = attendance_day(gallery=data["gallery"], day=start, tz=tz, camera=data["camera"])
            else:
                summary = attendance_range(gallery=data["gallery"], start=start, end=end, tz=tz,
                                           camera=data["camera"])
            if request.GET.get("export") == "csv":
                text, filename = (day_csv(sheet), day_filename(sheet)) if sheet else (range_csv(summary),
                                                                                       range_filename(summary))
                response = HttpResponse(text, content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="{filename}"'
                return response
        shown = sheet or summary
        context = {
            **self.admin_site.each_context(request),
            "title": "Attendance",
            "opts": self.model._meta,
            "form": form,
            "sheet": sheet,
            "summary": summary,
            "rows": self._rows(sheet, summary),
            # Strings: a template would show aware datetimes in the site's zone, not the sheet's.
            "bounds": (iso(shown.start), iso(shown.end)) if shown else None,
        }
        return TemplateResponse(request, "admin/attendance/attendance.html", context)

    @staticmethod
    def _rows(sheet, summary) -> list[dict]:
        if sheet is not None:
            return [{"person": m.person, "present": m.present, "first_seen": _time(m.first_seen, sheet.day),
                     "last_seen": _time(m.last_seen, sheet.day), "cameras": ", ".join(m.cameras),
                     "appearances": m.appearances} for m in sheet.members]
        if summary is not None:
            return [{"person": m.person, "present": m.days_present > 0, "days_present": m.days_present,
                     "dates": ", ".join(d.isoformat() for d in m.dates), "first_seen": _time(m.first_seen),
                     "last_seen": _time(m.last_seen)} for m in summary.members]
        return []
