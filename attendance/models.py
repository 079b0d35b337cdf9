"""Attendance has no table of its own: it is read from recognition events. This proxy model only
gives the admin its "Attendance" page (a model is what the admin index lists and links)."""

from __future__ import annotations

from events.models import Event


class AttendanceSheet(Event):
    class Meta:
        proxy = True
        verbose_name = "attendance sheet"
        verbose_name_plural = "attendance sheets"
